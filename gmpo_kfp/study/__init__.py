"""The study: GMPO against GRPO on one recipe (:mod:`.compare`); curves (:mod:`.report`)."""

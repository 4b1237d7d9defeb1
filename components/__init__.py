"""KFP components of gmpo-kfp (shipped as ``gmpo_kfp.components``)."""

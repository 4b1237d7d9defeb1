"""Training: the engine seam, its two engines, and what both share.

:mod:`.base` is the seam (``Engine``, ``EngineRun``, checkpoint layouts); :mod:`.trl`
runs TRL on one machine, :mod:`.verl` runs verl on Ray (on a KubeRay RayJob through
:mod:`.rayjob`); :mod:`.training` is ``gmpo_kfp.train(config)``: the model, the
warm-up, the engine, the result; :mod:`.mirror` mirrors checkpoints to the output URI
and restores them; :mod:`.sampling` samples TRL's rollouts without ``generate``'s overhead;
:mod:`.shared_prefix` is the update's forward with each distinct prompt run once.
"""

"""What runs inside verl's processes: our loss in verl's registry, verl beside TRL, verl on a CPU.

:mod:`.plugin` is the module verl loads (entry point ``verl.plugins`` and
``VERL_USE_EXTERNAL_MODULES``) to register the ``gmpo`` policy loss; :mod:`.compat`
lets verl 0.9.1 import beside TRL and runs post-import hooks; :mod:`.cpu` is the CPU
platform, process group and rollout backend. Only these modules import verl, and only
in verl's own processes: the engine that launches verl (:mod:`gmpo_kfp.engines.verl`)
names them and imports none of verl.
"""

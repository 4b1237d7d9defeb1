"""verl 0.9.1 on a CPU: what a laptop needs to run a verl recipe before it costs GPU hours.

Imported in every verl process (driver, task runner, Ray workers) through verl's
external-module hook, ``VERL_USE_EXTERNAL_MODULES=gmpo_kfp.in_verl.cpu.hooks``, which the verl
engine sets when it runs on a CPU (:mod:`gmpo_kfp.engines.verl`). verl's own files
are not edited; each piece goes through a registry or hook verl offers:

- a ``cpu`` platform in verl's platform registry (:mod:`.platform`), selected with
  ``VERL_PLATFORM=cpu``;
- verl's workers start their process group as ``cpu:gloo,<device>:<backend>``,
  which on a CPU names ``cpu`` twice (torch refuses it): there it is plain ``gloo``;
- verl registers its FSDP engine for cuda and npu only; ``VERL_ENGINE_DEVICE=cuda``
  (verl's own switch) selects the same engine class, which runs on the platform's
  device;
- the reference model's FSDP2 CPU offload pins memory, which needs an accelerator:
  on the CPU it is left unpinned (a KL loss runs, as on a GPU);
- a transformers rollout backend, ``rollout.name=transformers`` (:mod:`.rollout`).

The Hydra side (FSDP2, sdpa attention, no remove-padding, logical Ray resources)
is in the engine's override mapping.

This package itself imports nothing of verl: it names the pieces (the engine reads
these names); :mod:`.hooks` installs them.
"""

from __future__ import annotations

from gmpo_kfp import settings

#: The module verl imports in every process (``VERL_USE_EXTERNAL_MODULES``).
HOOK_MODULE = f"{__name__}.hooks"
#: ``VERL_PLATFORM`` value of the CPU platform.
PLATFORM_NAME = "cpu"
#: ``actor_rollout_ref.rollout.name`` of the transformers rollout backend.
ROLLOUT_NAME = "transformers"


def environment() -> dict[str, str]:
    """The environment a verl run on a CPU needs, in the driver and every Ray worker."""
    return {
        settings.VERL_MODULES_ENV: HOOK_MODULE,
        "VERL_PLATFORM": PLATFORM_NAME,
        # verl's switch for the engine registry: the FSDP engine is registered for cuda
        "VERL_ENGINE_DEVICE": "cuda",
        "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }

"""Installs verl's CPU support in this process (see :mod:`gmpo_kfp.in_verl.cpu`)."""

from __future__ import annotations

from types import ModuleType

from gmpo_kfp.in_verl.compat import after_import
from gmpo_kfp.in_verl.cpu import ROLLOUT_NAME
from gmpo_kfp.in_verl.cpu.platform import PlatformCPU

__all__ = ["PlatformCPU", "install"]

_ROLLOUT = "gmpo_kfp.in_verl.cpu.rollout"


def _gloo_process_group(module: ModuleType) -> None:
    start = module.initialize_global_process_group_ray
    if getattr(start, "_gmpo_gloo", False):
        return

    def initialize_gloo(timeout_second=None, backend=None):
        return start(timeout_second=timeout_second, backend=backend or "gloo")

    initialize_gloo._gmpo_gloo = True
    module.initialize_global_process_group_ray = initialize_gloo


def _unpinned_offload(module: ModuleType) -> None:
    """The reference model (``forward_only``) gets FSDP2's ``CPUOffloadPolicy(pin_memory=
    True)``; pinning needs an accelerator. On the CPU the parameters are in host memory
    already: the same policy, unpinned."""
    policy = module.CPUOffloadPolicy
    if policy is None or getattr(policy, "_gmpo_unpinned", False):
        return

    def unpinned(pin_memory: bool = True):
        return policy(pin_memory=False)

    unpinned._gmpo_unpinned = True
    module.CPUOffloadPolicy = unpinned


def _register_rollout_class(module: ModuleType) -> None:
    module._ROLLOUT_REGISTRY[(ROLLOUT_NAME, "async")] = f"{_ROLLOUT}.TransformersServerAdapter"


def _register_replica(module: ModuleType) -> None:
    def load():
        from gmpo_kfp.in_verl.cpu.rollout import TransformersReplica

        return TransformersReplica

    module.RolloutReplicaRegistry.register(ROLLOUT_NAME, load)


def install() -> None:
    """Hook every piece into verl (idempotent; the platform registers on import)."""
    from gmpo_kfp.in_verl import compat as verl_compat

    verl_compat.install()
    after_import("verl.workers.engine_workers", _gloo_process_group)
    after_import("verl.workers.engine.fsdp.transformer_impl", _unpinned_offload)
    after_import("verl.workers.rollout.base", _register_rollout_class)
    after_import("verl.workers.rollout.replica", _register_replica)


install()

"""Keeps verl 0.9.1 working beside the packages we install with it, without editing verl.

Loaded with our loss plugin (:mod:`gmpo_kfp.in_verl.plugin`), so in every process that
imports verl: the driver, the task runner and every Ray worker, on a GPU cluster
as on a CPU.

- :func:`after_import`: run a function on a module once it is imported (at once if
  it already is). verl's workers import its modules lazily; this is how a fix
  reaches the name a module looks up when it runs, and nothing else.
- trl 1.16 has no ``AutoModelForCausalLMWithValueHead``. verl's model build
  (``verl/models/transformers/monkey_patch.py``, ``apply_monkey_patch``) imports
  it whenever trl is installed, to patch the value-head model's ``state_dict``,
  and fails with ``ImportError`` at actor init. The patch matters only where that
  class exists (a PPO critic built on trl's value head; GMPO and GRPO have no
  critic), so the check it runs becomes "trl has the value-head class".
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import sys
import warnings
from collections.abc import Callable
from types import ModuleType

_PENDING: dict[str, list[Callable[[ModuleType], None]]] = {}


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader of a watched module to run its hooks."""

    def find_spec(self, name, path, target=None):
        if name not in _PENDING:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_hook(module: ModuleType) -> None:
            exec_module(module)
            for hook in _PENDING.pop(name, []):
                hook(module)

        loader.exec_module = exec_then_hook  # this module's own loader instance
        return spec


_FINDER = _AfterImportFinder()


def after_import(module: str, hook: Callable[[ModuleType], None]) -> None:
    """Call ``hook(module)`` once ``module`` is imported; now if it already is."""
    loaded = sys.modules.get(module)
    if loaded is not None and getattr(loaded, "__spec__", None) is not None:
        hook(loaded)
        return
    _PENDING.setdefault(module, []).append(hook)
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


@functools.cache
def trl_has_value_head() -> bool:
    """True when the installed trl still ships ``AutoModelForCausalLMWithValueHead``."""
    if importlib.util.find_spec("trl") is None:
        return False
    for where in ("trl.experimental.ppo", "trl"):
        try:
            with warnings.catch_warnings():  # trl.experimental warns on import
                warnings.simplefilter("ignore")
                module = importlib.import_module(where)
        except ImportError:
            continue
        if hasattr(module, "AutoModelForCausalLMWithValueHead"):
            return True
    return False


def _value_head_check(module: ModuleType) -> None:
    module.is_trl_available = trl_has_value_head


def install() -> None:
    """Install every fix above (idempotent)."""
    after_import("verl.models.transformers.monkey_patch", _value_head_check)

"""Old import paths of modules that moved into the package's rooms, kept working for 0.x.

``import gmpo_kfp.stages`` (and ``gmpo_kfp.verl_plugin`` in a verl config's
``VERL_USE_EXTERNAL_MODULES``) gives the very module object at its new path, with a
:class:`DeprecationWarning` that names the new one. The package's own code uses the
new paths only (``tests/unit/test_layout.py`` checks it). Installed by
``gmpo_kfp/__init__.py``; the old paths go in 1.0.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

#: old module path -> new module path (a moved package's submodules move with it)
MOVED = {
    "gmpo_kfp.training": "gmpo_kfp.engines.training",
    "gmpo_kfp.mirror": "gmpo_kfp.engines.mirror",
    "gmpo_kfp.evaluate": "gmpo_kfp.evaluation.evaluate",
    "gmpo_kfp.models": "gmpo_kfp.evaluation.models",
    "gmpo_kfp.packaged": "gmpo_kfp.evaluation.packaged",
    "gmpo_kfp.verl_plugin": "gmpo_kfp.in_verl.plugin",
    "gmpo_kfp.verl_compat": "gmpo_kfp.in_verl.compat",
    "gmpo_kfp.verl_cpu": "gmpo_kfp.in_verl.cpu",
    "gmpo_kfp.manifests": "gmpo_kfp.cluster.manifests",
    "gmpo_kfp.schedule": "gmpo_kfp.cluster.schedule",
    "gmpo_kfp.prometheus": "gmpo_kfp.cluster.prometheus",
    "gmpo_kfp.stages": "gmpo_kfp.workflow.stages",
    "gmpo_kfp.kfp_runs": "gmpo_kfp.workflow.kfp_runs",
    "gmpo_kfp.run_log": "gmpo_kfp.workflow.run_log",
    "gmpo_kfp.registry": "gmpo_kfp.workflow.registry",
    "gmpo_kfp.compare": "gmpo_kfp.study.compare",
    "gmpo_kfp.report": "gmpo_kfp.study.report",
}


_OLD = tuple(MOVED)


def new_path(name: str) -> str | None:
    """The new path of an old module path, or ``None`` where ``name`` did not move."""
    if not name.startswith(_OLD):  # every import of the process asks: answer most at once
        return None
    for old, new in MOVED.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old) :]
    return None


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path and loads it as the module already imported at its new path."""

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def find_spec(self, fullname, path=None, target=None):
        new = new_path(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, origin=new)

    def create_module(self, spec):
        warnings.warn(
            f"{spec.name} moved to {spec.origin}; import it from there "
            "(the old path goes in gmpo-kfp 1.0)",
            DeprecationWarning,
            stacklevel=2,
        )
        module = importlib.import_module(spec.origin)
        self._specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module):
        # the import system stamped the old path's spec on the module: give it back its own
        module.__spec__ = self._specs[module.__name__]


def install() -> None:
    """Put the old paths' finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.insert(0, _Alias())

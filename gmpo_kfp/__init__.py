"""gmpo-kfp: GMPO (Geometric-Mean Policy Optimization) training as a Kubeflow pipeline.

The top level is the core: the objective (:mod:`gmpo_kfp.objective`, pure torch), group
advantages and KL estimators (:mod:`gmpo_kfp.advantages`), the typed config and its
recipes, data and grading, storage, metric names and the project's facts. The rooms
around it are subpackages: ``engines`` (``gmpo_kfp.train``), ``in_verl`` (our loss in
verl's registry), ``evaluation``, ``cluster``, ``workflow`` (the KFP side), ``study``
and ``containers``; ``docs/architecture.md`` draws them.
"""

from gmpo_kfp import _moved
from gmpo_kfp.version import __version__

__all__ = ["__version__", "train"]

_moved.install()


def __getattr__(name: str):
    # `gmpo_kfp.train` without importing torch and TRL on `import gmpo_kfp`
    if name == "train":
        from gmpo_kfp.engines.training import train

        return train
    raise AttributeError(f"module 'gmpo_kfp' has no attribute {name!r}")

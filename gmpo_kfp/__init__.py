"""gmpo-kfp: GMPO (Geometric-Mean Policy Optimization) training as a Kubeflow pipeline.

The objective lives in :mod:`gmpo_kfp.objective` (pure torch); group advantages,
KL estimators and entropy in :mod:`gmpo_kfp.advantages`; the verl registration in
:mod:`gmpo_kfp.verl_plugin`.
"""

from gmpo_kfp.version import __version__

__all__ = ["__version__", "train"]


def __getattr__(name: str):
    # `gmpo_kfp.train` without importing torch and TRL on `import gmpo_kfp`
    if name == "train":
        from gmpo_kfp.training import train

        return train
    raise AttributeError(f"module 'gmpo_kfp' has no attribute {name!r}")

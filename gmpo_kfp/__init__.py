"""gmpo-kfp: GMPO (Geometric-Mean Policy Optimization) training as a Kubeflow pipeline.

The objective lives in :mod:`gmpo_kfp.objective` (pure torch); group advantages,
KL estimators and entropy in :mod:`gmpo_kfp.advantages`; the verl registration in
:mod:`gmpo_kfp.verl_plugin`.
"""

__version__ = "0.1.0"

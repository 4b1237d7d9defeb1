"""Names the config validates and the torch modules implement, importable without torch.

:mod:`gmpo_kfp.objective` registers a loss under each of :data:`LOSS_NAMES` and
aggregates by :data:`LOSS_AGG_MODES`; :mod:`gmpo_kfp.config` offers exactly these as
choices (a test holds the registry to this list).
"""

#: The built-in policy losses (:func:`gmpo_kfp.objective.policy_loss_names`).
LOSS_NAMES = ("gmpo", "grpo", "gspo")

#: Aggregation modes of :func:`gmpo_kfp.objective.aggregate_loss` (verl's ``loss_agg_mode``).
LOSS_AGG_MODES = (
    "token-mean",
    "token-sum",
    "seq-mean-token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-sum-norm",
)

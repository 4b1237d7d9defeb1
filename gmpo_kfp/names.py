"""Names the config validates and the torch modules implement, importable without torch.

:mod:`gmpo_kfp.objective` registers a loss under each of :data:`LOSS_NAMES` and
aggregates by :data:`LOSS_AGG_MODES`; :mod:`gmpo_kfp.advantages` estimates KL by
:data:`KL_ESTIMATORS`; :mod:`gmpo_kfp.config` offers exactly these as choices (a test
holds the loss registry to its list).
"""

#: The built-in policy losses (:func:`gmpo_kfp.objective.policy_loss_names`).
LOSS_NAMES = ("gmpo", "grpo", "gspo")

#: KL estimator names (verl's ``kl_loss_type`` spellings among them) -> the estimator
#: :func:`gmpo_kfp.advantages.kl_estimate` computes (Schulman's k1, k2, k3, or |log r|).
KL_ESTIMATORS = {
    "k1": "k1",
    "kl": "k1",
    "k2": "k2",
    "mse": "k2",
    "k3": "k3",
    "low_var_kl": "k3",
    "abs": "abs",
}

#: Aggregation modes of :func:`gmpo_kfp.objective.aggregate_loss` (verl's ``loss_agg_mode``).
LOSS_AGG_MODES = (
    "token-mean",
    "token-sum",
    "seq-mean-token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-sum-norm",
)

"""Registers :func:`gmpo_kfp.objective.gmpo_loss` in verl's policy-loss registry as ``gmpo``.

Select it with ``actor_rollout_ref.actor.policy_loss.loss_mode=gmpo``; verl's own
``geo_mean`` stays registered and untouched.

How the registration reaches every process:

- The package declares this module in the ``verl.plugins`` entry-point group, and
  ``import verl`` loads that group (``VERL_USE_EXTERNAL_PLUGINS``: ``auto`` by
  default, ``none``, or a comma-separated list of entry-point names that must then
  include ``gmpo``). Every Ray worker imports verl, so every worker registers.
- Or set ``VERL_USE_EXTERNAL_MODULES=gmpo_kfp.in_verl.plugin``: verl imports the
  modules named there when it is imported.

Split invariance. verl 0.9.1's engine sums the losses of a rank's micro-batches
before ``backward`` and the data-parallel all-reduce then averages gradients over
ranks. Before each micro-batch it stores in ``config.global_batch_info``:
``dp_size``, ``global_batch_size`` (the mini-batch's sequence count over all ranks,
``ppo_mini_batch_size * rollout.n``) and ``batch_num_tokens``
(``verl.workers.utils.losses.ppo_loss``). ``geo_mean`` ignores them and returns
the mean over its micro-batch, so its gradient scales with the number of
micro-batches and depends on how the mini-batch is split. Ours returns::

    loss_mb = -sum_{i in mb} A_i R_i / global_batch_size * dp_size

so that summing over micro-batches and averaging over ranks gives exactly
``-sum_i A_i R_i / global_batch_size``, the mini-batch loss, for any split. Without
global batch info (a single process) it is the plain mean over the micro-batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY, register_policy_loss

from gmpo_kfp.in_verl import compat as verl_compat
from gmpo_kfp.objective import METRIC_NAMES, gmpo_loss

verl_compat.install()  # every process that loads our loss gets verl working beside trl 1.16

#: The name under which verl finds our loss (``policy_loss.loss_mode``).
VERL_LOSS_NAME = "gmpo"

#: The prefix verl puts on actor metrics.
METRIC_PREFIX = "actor/"


def _clip_bounds(config: Any) -> tuple[float, float]:
    low = getattr(config, "clip_ratio_low", None)
    high = getattr(config, "clip_ratio_high", None)
    base = getattr(config, "clip_ratio", None)
    low = base if low is None else low
    high = base if high is None else high
    if low is None or high is None:
        raise ValueError(
            "actor config sets no clip ratio: set actor_rollout_ref.actor.clip_ratio_low "
            "and clip_ratio_high (0.4 for GMPO)"
        )
    return float(low), float(high)


def sequence_is_weights(rollout_is_weights: Tensor, response_mask: Tensor) -> Tensor:
    """Token-level rollout importance weights to one weight per sequence.

    The geometric mean over the response, as verl's ``geo_mean`` does:
    w_i = exp( sum_t m_t log(w_t + 1e-10) / |o_i| ).
    """
    mask = response_mask.to(torch.float32)
    lengths = mask.sum(-1).clamp(min=1)
    logw = torch.log(rollout_is_weights.to(torch.float32) + 1e-10)
    return torch.exp((logw * mask).sum(-1) / lengths)


@register_policy_loss(VERL_LOSS_NAME)
def compute_policy_loss_gmpo(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """verl's policy-loss signature around :func:`gmpo_kfp.objective.gmpo_loss`.

    ``loss_agg_mode`` is accepted and ignored: GMPO aggregates per sequence. The
    loss is normalised by the global batch as the module docstring explains.
    Returns verl's ``actor/``-prefixed metrics as floats.
    """
    if config is None:
        raise ValueError("the gmpo policy loss needs verl's actor config (config=...)")
    low, high = _clip_bounds(config)
    info = getattr(config, "global_batch_info", None) or {}
    dp_size = int(info.get("dp_size") or 1)
    global_batch_size = info.get("global_batch_size")
    if global_batch_size is None and dp_size > 1:
        raise ValueError(
            "global_batch_size is missing from config.global_batch_info with dp_size > 1: "
            "the gmpo loss needs verl's engine workers (verl >= 0.7)"
        )
    weights = None
    if rollout_is_weights is not None:
        weights = sequence_is_weights(rollout_is_weights, response_mask)
    loss, metrics = gmpo_loss(
        old_log_prob,
        log_prob,
        advantages,
        response_mask,
        clip_ratio_low=low,
        clip_ratio_high=high,
        num_sequences=global_batch_size,
        sequence_weights=weights,
    )
    if global_batch_size is not None:
        loss = loss * dp_size
    values = torch.stack([metrics[name].float() for name in METRIC_NAMES]).tolist()
    return loss, {METRIC_PREFIX + name: v for name, v in zip(METRIC_NAMES, values, strict=True)}


def is_registered() -> bool:
    """True when verl's registry maps ``gmpo`` to this module's loss."""
    return POLICY_LOSS_REGISTRY.get(VERL_LOSS_NAME) is compute_policy_loss_gmpo

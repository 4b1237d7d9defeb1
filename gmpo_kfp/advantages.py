"""Group-relative outcome advantages, KL estimators and entropy: pure torch.

Notation: r_i the scalar reward of response i, g(i) its group (the prompt it
answers), G_g the responses of group g, m_t the response mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from gmpo_kfp.names import KL_ESTIMATORS

__all__ = [
    "KL_ESTIMATORS",
    "entropy_from_logits",
    "group_advantages",
    "kl_estimate",
    "masked_entropy",
    "outcome_advantages",
]


def _group_index(group_ids: Sequence | np.ndarray | Tensor, n: int, device) -> Tensor:
    """Map arbitrary hashable group ids (ints, strings, uuids) to 0..G-1."""
    if isinstance(group_ids, Tensor):
        ids = group_ids.detach().cpu().numpy()
    else:
        ids = np.asarray(group_ids)
    if ids.shape != (n,):
        raise ValueError(f"group_ids has shape {ids.shape}; expected ({n},), one id per reward")
    if ids.dtype.kind == "O":  # uuids or mixed objects: compare by their text
        ids = ids.astype(str)
    _, inverse = np.unique(ids, return_inverse=True)
    return torch.as_tensor(inverse.reshape(-1), device=device, dtype=torch.long)


def group_advantages(
    rewards: Tensor,
    group_ids: Sequence | np.ndarray | Tensor,
    *,
    scale_by_std: bool = True,
    eps: float = 1e-6,
) -> Tensor:
    """Group-relative advantages of scalar rewards, one per response.

    GRPO (``scale_by_std=True``)::

        A_i = (r_i - mean_{j in G_g(i)} r_j) / (std_{j in G_g(i)} r_j + eps)

    Dr.GRPO (``scale_by_std=False``): A_i = r_i - mean_{j in G_g(i)} r_j.

    std is the unbiased sample standard deviation (as ``torch.std``); a group of
    one response gets mean 0 and std 1, so A_i = r_i / (1 + eps), as verl does.
    A group whose rewards are all equal gives 0. Vectorised: no Python loop over
    rows or groups.

    Args:
        rewards: ``[B]`` scalar rewards.
        group_ids: ``B`` hashable ids (ints, strings or uuids); equal id = same group.
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must have shape [batch], got {tuple(rewards.shape)}")
    dtype = torch.promote_types(rewards.dtype, torch.float32)
    r = rewards.to(dtype)
    idx = _group_index(group_ids, r.shape[0], r.device)
    n_groups = int(idx.max()) + 1 if idx.numel() else 0
    counts = torch.zeros(n_groups, dtype=dtype, device=r.device).index_add_(
        0, idx, torch.ones_like(r)
    )
    sums = torch.zeros(n_groups, dtype=dtype, device=r.device).index_add_(0, idx, r)
    mean = sums / counts
    dev = r - mean[idx]
    sq = torch.zeros(n_groups, dtype=dtype, device=r.device).index_add_(0, idx, dev * dev)
    std = torch.sqrt(sq / (counts - 1).clamp(min=1))
    single = counts[idx] == 1
    if scale_by_std:
        out = dev / (std[idx] + eps)
        return torch.where(single, r / (1.0 + eps), out)
    return torch.where(single, r, dev)


def outcome_advantages(
    token_level_rewards: Tensor,
    response_mask: Tensor,
    group_ids: Sequence | np.ndarray | Tensor,
    *,
    scale_by_std: bool = True,
    eps: float = 1e-6,
) -> Tensor:
    """Token-level advantages ``[B, T]`` from outcome rewards, verl's GRPO layout.

    r_i = sum_t token_level_rewards_{i,t}; every response token gets
    :func:`group_advantages` of it, padding gets 0.
    """
    scores = token_level_rewards.sum(-1)
    adv = group_advantages(scores, group_ids, scale_by_std=scale_by_std, eps=eps)
    return adv.unsqueeze(-1) * response_mask.to(adv.dtype)


def kl_estimate(log_prob: Tensor, ref_log_prob: Tensor, estimator: str = "k3") -> Tensor:
    """Per-token estimate of KL(pi_theta || pi_ref) from sampled tokens (Schulman 2020).

    With d = log_prob - ref_log_prob:

    - ``k1`` (``kl``): d (unbiased, high variance, can be negative);
    - ``k2`` (``mse``): d^2 / 2;
    - ``k3`` (``low_var_kl``): e^{-d} + d - 1 (unbiased, >= 0), with -d clamped to
      [-20, 20] and the result to [-10, 10] as in verl;
    - ``abs``: |d|.
    """
    kind = KL_ESTIMATORS.get(estimator)
    if kind is None:
        raise ValueError(
            f"unknown KL estimator {estimator!r}; known: {', '.join(sorted(KL_ESTIMATORS))}"
        )
    d = log_prob - ref_log_prob
    if kind == "k1":
        return d
    if kind == "k2":
        return 0.5 * d.square()
    if kind == "abs":
        return d.abs()
    neg = torch.clamp(-d, min=-20.0, max=20.0)
    return torch.clamp(neg.exp() - neg - 1.0, min=-10.0, max=10.0)


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Shannon entropy of softmax(logits) over the last axis: H = logsumexp(z) - sum p z."""
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)


def masked_entropy(logits: Tensor, response_mask: Tensor) -> Tensor:
    """Mean entropy over masked positions: sum_t m_t H_t / sum_t m_t (0 if none).

    ``logits`` is ``[B, T, V]``, ``response_mask`` ``[B, T]``.
    """
    if logits.shape[:-1] != response_mask.shape:
        raise ValueError(
            f"logits has shape {tuple(logits.shape)}; its leading dims must match "
            f"response_mask's {tuple(response_mask.shape)}"
        )
    ent = entropy_from_logits(logits)
    mask = response_mask.to(ent.dtype)
    return (ent * mask).sum() / mask.sum().clamp(min=1)

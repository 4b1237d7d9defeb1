"""Random [B, T] policy-loss batches shared by the unit and integration tests."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    old_log_prob: torch.Tensor
    log_prob: torch.Tensor
    advantages: torch.Tensor
    response_mask: torch.Tensor

    def args(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.old_log_prob, self.log_prob, self.advantages, self.response_mask


def random_batch(
    seed: int,
    batch: int = 12,
    tokens: int = 9,
    *,
    dtype: torch.dtype = torch.float32,
    scale: float = 0.5,
    group_size: int = 4,
    edge_cases: bool = True,
) -> Batch:
    """A GRPO-like batch: one advantage per row, groups of ``group_size``.

    With ``edge_cases`` the batch holds an empty response (row 1), a one-token
    response (row 2) and a group whose advantages are all zero (the last group).
    ``log_prob`` is a leaf that requires grad.
    """
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(batch, tokens, generator=g, dtype=torch.float64) * 3
    lp = old + torch.randn(batch, tokens, generator=g, dtype=torch.float64) * scale
    lengths = torch.randint(1, tokens + 1, (batch,), generator=g)
    adv_row = torch.randn(batch, generator=g, dtype=torch.float64)
    if edge_cases:
        lengths[1] = 0
        lengths[2] = 1
        adv_row[-group_size:] = 0.0
    mask = (torch.arange(tokens)[None, :] < lengths[:, None]).to(dtype)
    adv = (adv_row[:, None] * mask.double()).to(dtype)
    return Batch(
        old_log_prob=old.to(dtype),
        log_prob=lp.to(dtype).requires_grad_(True),
        advantages=adv,
        response_mask=mask,
    )

"""``gmpo_loss(compiled=True)``: torch.compile (inductor, this machine's C++ compiler) of the
forward's pure twin gives the eager loss's value, metrics and every gradient.

Integration, not unit: the first call compiles for several seconds."""

from __future__ import annotations

import math

import pytest
import torch

from gmpo_kfp.objective import gmpo_loss
from tests.support.batches import random_batch


def loss_metrics_grads(batch, *, compiled, **kwargs):
    old = batch.old_log_prob.detach().clone().requires_grad_(True)
    lp = batch.log_prob.detach().clone().requires_grad_(True)
    adv = batch.advantages.detach().clone().requires_grad_(True)
    loss, metrics = gmpo_loss(old, lp, adv, batch.response_mask, compiled=compiled, **kwargs)
    loss.backward()
    return [loss.detach(), torch.stack(list(metrics.values())), lp.grad, old.grad, adv.grad]


def hard_batch(dtype):
    """Empty and one-token rows, an all-zero group, a huge ratio either way, +inf padding."""
    batch = random_batch(3, batch=16, tokens=11, dtype=dtype)
    lp = batch.log_prob.detach().clone()
    # held by the safety bound (e^20) on the side the clip leaves open: no gradient
    assert batch.advantages[4, 0] > 0 > batch.advantages[5, 0]
    lp[4, 0] -= 60.0
    lp[5, 0] += 60.0
    lp[batch.response_mask == 0] = math.inf
    batch.log_prob = lp
    return batch


@pytest.mark.parametrize(
    ("dtype", "kwargs"),
    [
        (torch.float32, {}),
        (torch.float32, {"clip_ratio_low": 0.2, "clip_ratio_high": 0.6, "num_sequences": 64}),
        (torch.float32, {"sequence_weights": torch.linspace(0.5, 1.5, 16)}),
        (torch.bfloat16, {}),
    ],
)
def test_the_compiled_loss_is_the_eager_loss(dtype, kwargs):
    batch = hard_batch(dtype)
    eager = loss_metrics_grads(batch, compiled=False, **kwargs)
    compiled = loss_metrics_grads(batch, compiled=True, **kwargs)
    # float32 computations in another order; bf16 gradients may round one ulp apart
    tol = {"atol": 1e-6, "rtol": 1e-5 if dtype == torch.float32 else 2**-7}
    names = ("loss", "metrics", "grad lp", "grad old", "grad adv")
    for name, a, b in zip(names, eager, compiled, strict=True):
        assert a.dtype == b.dtype, name
        assert torch.allclose(a.double(), b.double(), **tol), (name, a, b)
    assert eager[2].abs().sum() > 0  # the batch has a gradient to compare
    assert eager[1][2] > 0 or eager[1][1] > 0  # and the clip replaced tokens


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_compiled_loss_is_the_eager_loss_on_rows_that_end_mid_vector(dtype):
    """Rows of 333 tokens (not a multiple of the 16-wide vectors), 64 of them (loops that
    OpenMP may split between threads), the clip active on both sides."""
    batch = random_batch(5, batch=64, tokens=333, dtype=dtype)
    eager = loss_metrics_grads(batch, compiled=False)
    compiled = loss_metrics_grads(batch, compiled=True)
    tol = {"atol": 1e-6, "rtol": 1e-5 if dtype == torch.float32 else 2**-7}
    for name, a, b in zip(("loss", "metrics", "grad lp"), eager, compiled, strict=False):
        assert torch.allclose(a.double(), b.double(), **tol), (name, a, b)
    assert eager[1][1] > 0 and eager[1][2] > 0  # clipped above (A > 0) and below (A < 0)

"""Differential tests against verl 0.9.1 (installed by the test command; runs on CPU).

Loss and gradient within 1e-5 on random batches holding an empty response, a
zero-advantage group and a one-token response. Where we differ from verl on
purpose, the test says so and checks the documented relation instead.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from verl.trainer.ppo import core_algos
from verl.utils.torch_functional import entropy_from_logits as verl_entropy
from verl.workers.config import ActorConfig

from gmpo_kfp.advantages import (
    entropy_from_logits,
    group_advantages,
    kl_estimate,
    masked_entropy,
    outcome_advantages,
)
from gmpo_kfp.objective import LOSS_AGG_MODES, gmpo_loss, grpo_loss, gspo_loss
from tests.support.batches import random_batch

TOL = {"rtol": 1e-5, "atol": 1e-5}
SEEDS = range(6)


def actor_config(low: float, high: float, **kw) -> ActorConfig:
    return ActorConfig(
        strategy="fsdp",
        rollout_n=4,
        ppo_micro_batch_size_per_gpu=1,
        clip_ratio_low=low,
        clip_ratio_high=high,
        **kw,
    )


def loss_and_grad(fn, batch, *args, **kw):
    lp = batch.log_prob.detach().clone().requires_grad_(True)
    loss, metrics = fn(batch.old_log_prob, lp, batch.advantages, batch.response_mask, *args, **kw)
    (grad,) = torch.autograd.grad(loss, lp)
    return loss.detach(), grad, metrics


def assert_batch_has_edge_cases(batch):
    lengths = batch.response_mask.sum(-1)
    assert (lengths == 0).any() and (lengths == 1).any()
    assert (batch.advantages.abs().sum(-1)[lengths > 0] == 0).any()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("low", "high"), [(0.4, 0.4), (0.2, 0.3)])
def test_gmpo_matches_verl_geo_mean(seed, low, high):
    batch = random_batch(seed, batch=16, tokens=24, scale=0.6)
    assert_batch_has_edge_cases(batch)
    verl_fn = core_algos.get_policy_loss_fn("geo_mean")
    v_loss, v_grad, v_metrics = loss_and_grad(verl_fn, batch, config=actor_config(low, high))
    o_loss, o_grad, o_metrics = loss_and_grad(
        gmpo_loss, batch, clip_ratio_low=low, clip_ratio_high=high
    )
    torch.testing.assert_close(o_loss, v_loss, **TOL)
    torch.testing.assert_close(o_grad, v_grad, **TOL)
    assert o_metrics["ppo_kl"].item() == pytest.approx(v_metrics["actor/ppo_kl"], abs=1e-6)
    # On purpose: verl counts every token outside the window when A > 0 (either side)
    # and every one when A < 0; we count only tokens the clip replaced, a subset.
    assert o_metrics["pg_clipfrac"].item() <= v_metrics["actor/pg_clipfrac"] + 1e-7
    assert o_metrics["pg_clipfrac_lower"].item() <= v_metrics["actor/pg_clipfrac_lower"] + 1e-7
    log_ratio = (batch.log_prob - batch.old_log_prob).detach()
    m = batch.response_mask.bool()
    replaced_pos = (m & (batch.advantages > 0) & (log_ratio > high)).sum() / m.sum()
    assert o_metrics["pg_clipfrac"].item() == pytest.approx(replaced_pos.item())


def test_gmpo_stays_finite_where_verl_geo_mean_overflows():
    """verl 0.9.1's geo_mean is infinite for a huge log-ratio on the unclipped side (A < 0)."""
    batch = random_batch(0)
    lp = batch.log_prob.detach().clone()
    lp[0, 0] = batch.old_log_prob[0, 0] + 1000.0
    batch.advantages[0] = -batch.advantages[0].abs() - 0.5
    batch.advantages[0] *= batch.response_mask[0]
    batch.log_prob = lp
    verl_loss, _ = core_algos.get_policy_loss_fn("geo_mean")(
        batch.old_log_prob, lp, batch.advantages, batch.response_mask, config=actor_config(0.4, 0.4)
    )
    assert not torch.isfinite(verl_loss)
    loss, grad, _ = loss_and_grad(gmpo_loss, batch)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_grpo_matches_verl_vanilla(seed, mode):
    batch = random_batch(seed, batch=16, tokens=24, scale=0.8)
    cfg = actor_config(0.2, 0.28, loss_agg_mode=mode)
    verl_fn = core_algos.get_policy_loss_fn("vanilla")
    v_loss, v_grad, v_metrics = loss_and_grad(verl_fn, batch, loss_agg_mode=mode, config=cfg)
    o_loss, o_grad, o_metrics = loss_and_grad(
        grpo_loss, batch, clip_ratio_low=0.2, clip_ratio_high=0.28, loss_agg_mode=mode
    )
    torch.testing.assert_close(o_loss, v_loss, **TOL)
    torch.testing.assert_close(o_grad, v_grad, **TOL)
    for name in ("ppo_kl", "pg_clipfrac", "pg_clipfrac_lower"):
        assert o_metrics[name].item() == pytest.approx(v_metrics[f"actor/{name}"], abs=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", ["seq-mean-token-mean", "token-mean"])
def test_gspo_matches_verl_gspo(seed, mode):
    batch = random_batch(seed, batch=16, tokens=24, scale=0.05)
    cfg = actor_config(0.01, 0.02, loss_agg_mode=mode)
    verl_fn = core_algos.get_policy_loss_fn("gspo")
    v_loss, v_grad, v_metrics = loss_and_grad(verl_fn, batch, loss_agg_mode=mode, config=cfg)
    o_loss, o_grad, o_metrics = loss_and_grad(
        gspo_loss, batch, clip_ratio_low=0.01, clip_ratio_high=0.02, loss_agg_mode=mode
    )
    torch.testing.assert_close(o_loss, v_loss, **TOL)
    torch.testing.assert_close(o_grad, v_grad, **TOL)
    assert o_metrics["pg_clipfrac"].item() == pytest.approx(v_metrics["actor/pg_clipfrac"])
    assert o_metrics["ppo_kl"].item() == pytest.approx(v_metrics["actor/ppo_kl"], abs=1e-6)


@pytest.mark.parametrize("scale_by_std", [True, False])
@pytest.mark.parametrize("seed", SEEDS)
def test_group_advantages_match_verl_grpo(seed, scale_by_std):
    g = torch.Generator().manual_seed(seed)
    groups, size, tokens = 6, 4, 10
    rewards = (torch.rand(groups * size, generator=g) < 0.5).float()
    rewards[:size] = 1.0  # an all-correct group: advantages 0
    index = np.array([f"uid-{i // size}" for i in range(groups * size)] + ["lonely"], dtype=object)
    rewards = torch.cat([rewards, torch.tensor([1.0])])  # a group of one
    lengths = torch.randint(0, tokens + 1, (rewards.shape[0],), generator=g)
    mask = (torch.arange(tokens)[None] < lengths[:, None]).float()
    token_rewards = torch.zeros(rewards.shape[0], tokens)
    token_rewards[:, -1] = rewards  # verl puts the outcome reward on one token
    v_adv, _ = core_algos.compute_grpo_outcome_advantage(
        token_rewards, mask, index, norm_adv_by_std_in_grpo=scale_by_std
    )
    o_adv = outcome_advantages(token_rewards, mask, index, scale_by_std=scale_by_std)
    torch.testing.assert_close(o_adv, v_adv, **TOL)
    row = group_advantages(rewards, index, scale_by_std=scale_by_std)
    assert torch.all(row[:size] == 0)


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3", "kl", "mse", "low_var_kl", "abs"])
def test_kl_estimators_match_verl(estimator):
    b = random_batch(1, batch=8, tokens=16, scale=2.0)
    ref = b.old_log_prob
    ours = kl_estimate(b.log_prob, ref, estimator)
    theirs = core_algos.kl_penalty(b.log_prob, ref, estimator)
    torch.testing.assert_close(ours, theirs, **TOL)
    (g1,) = torch.autograd.grad(ours.sum(), b.log_prob)
    (g2,) = torch.autograd.grad(theirs.sum(), b.log_prob)
    torch.testing.assert_close(g1, g2, **TOL)


def test_entropy_matches_verl():
    logits = torch.randn(4, 7, 33, generator=torch.Generator().manual_seed(0)) * 3
    torch.testing.assert_close(entropy_from_logits(logits), verl_entropy(logits), **TOL)
    mask = torch.ones(4, 7)
    mask[0, 3:] = 0
    mask[1] = 0
    expected = (verl_entropy(logits) * mask).sum() / mask.sum()
    torch.testing.assert_close(masked_entropy(logits, mask), expected, **TOL)

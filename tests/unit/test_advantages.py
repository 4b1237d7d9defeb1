"""Group advantages, KL estimators and entropy against direct formulas."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gmpo_kfp.advantages import (
    entropy_from_logits,
    group_advantages,
    kl_estimate,
    masked_entropy,
    outcome_advantages,
)


@given(
    rewards=st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=1, max_size=24),
    n_groups=st.integers(1, 6),
    scale=st.booleans(),
)
def test_group_advantages_follow_the_formula(rewards, n_groups, scale):
    ids = [i % n_groups for i in range(len(rewards))]
    got = group_advantages(torch.tensor(rewards), ids, scale_by_std=scale).tolist()
    for i, r in enumerate(rewards):
        members = [rewards[j] for j in range(len(rewards)) if ids[j] == ids[i]]
        if len(members) == 1:
            expected = r / (1 + 1e-6) if scale else r
        else:
            dev = r - statistics.fmean(members)
            expected = dev / (statistics.stdev(members) + 1e-6) if scale else dev
        assert got[i] == pytest.approx(expected, abs=1e-5)


def test_equal_rewards_give_zero_and_string_ids_group():
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0])
    ids = np.array(["a", "a", "a", "b", "b"], dtype=object)
    adv = group_advantages(rewards, ids)
    assert adv[:3].tolist() == [0.0, 0.0, 0.0]
    assert adv[3].item() == pytest.approx(-0.5 / (math.sqrt(0.5) + 1e-6), rel=1e-5)
    assert adv[3].item() == pytest.approx(-adv[4].item())


def test_outcome_advantages_broadcast_over_the_mask():
    token_rewards = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = outcome_advantages(token_rewards, mask, [7, 7], scale_by_std=False)
    assert adv.tolist() == [[0.5, 0.5], [-0.5, 0.0]]


def test_group_ids_must_match_rewards():
    with pytest.raises(ValueError, match=r"group_ids has shape \(2,\); expected \(3,\)"):
        group_advantages(torch.zeros(3), [1, 2])
    with pytest.raises(ValueError, match="rewards must have shape"):
        group_advantages(torch.zeros(3, 1), [1, 2, 3])


def test_kl_estimators_by_hand():
    lp = torch.tensor([-1.0, -2.0])
    ref = torch.tensor([-1.5, -1.0])
    d = lp - ref
    assert kl_estimate(lp, ref, "k1").tolist() == pytest.approx(d.tolist())
    assert kl_estimate(lp, ref, "k2").tolist() == pytest.approx((0.5 * d**2).tolist())
    k3 = (torch.exp(-d) + d - 1).tolist()
    assert kl_estimate(lp, ref, "k3").tolist() == pytest.approx(k3)
    assert all(v >= 0 for v in kl_estimate(lp, ref, "low_var_kl").tolist())
    with pytest.raises(ValueError, match="unknown KL estimator 'k4'; known: abs, k1"):
        kl_estimate(lp, ref, "k4")


def test_entropy_of_uniform_and_one_hot():
    assert entropy_from_logits(torch.zeros(3, 8)).tolist() == pytest.approx([math.log(8)] * 3)
    peaked = torch.tensor([[100.0, 0.0, 0.0]])
    assert entropy_from_logits(peaked).item() == pytest.approx(0.0, abs=1e-6)


def test_masked_entropy_ignores_padding_and_empty_is_zero():
    logits = torch.zeros(2, 3, 4)
    logits[1] = 1e4 * torch.eye(4)[:3]  # near-zero entropy, but masked out
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert masked_entropy(logits, mask).item() == pytest.approx(math.log(4))
    assert masked_entropy(logits, torch.zeros(2, 3)).item() == 0.0
    with pytest.raises(ValueError, match="leading dims must match"):
        masked_entropy(logits, torch.zeros(2, 4))

"""The GMPO, GRPO and GSPO losses: the spec's worked vectors, errors, gradients, properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gmpo_kfp.objective import (
    LOSS_AGG_MODES,
    METRIC_NAMES,
    aggregate_loss,
    get_policy_loss,
    gmpo_loss,
    grpo_loss,
    gspo_loss,
    policy_loss_names,
    register_policy_loss,
)
from tests.support.batches import random_batch


def one_sequence(ratios, advantage):
    log_prob = torch.log(torch.tensor([ratios], dtype=torch.float64))
    old = torch.zeros_like(log_prob)
    adv = torch.full_like(log_prob, advantage)
    return old, log_prob, adv, torch.ones_like(log_prob)


# ------------------------------------------------------------------ worked vectors


@pytest.mark.parametrize(
    ("ratios", "advantage", "expected"),
    [
        ((1.0, 1.1, 0.9, 8.0), +1.0, -1.102398),
        ((1.0, 1.1, 0.9, 8.0), -1.0, +1.677572),
        ((1.0, 1.1, 0.5, 0.9), +1.0, -0.838786),
        ((1.0, 1.1, 0.5, 0.9), -1.0, +0.902567),
    ],
)
def test_spec_worked_vectors(ratios, advantage, expected):
    loss, metrics = gmpo_loss(*one_sequence(ratios, advantage))
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert metrics["seq_ratio_min"].item() == pytest.approx(abs(expected), abs=1e-6)
    assert metrics["token_ratio_min"].item() == pytest.approx(min(ratios))
    assert metrics["token_ratio_max"].item() == pytest.approx(max(ratios))


def test_worked_vector_clipped_log_ratios_and_clip_fractions():
    old, lp, adv, mask = one_sequence((1.0, 1.1, 0.9, 8.0), +1.0)
    lp.requires_grad_(True)
    loss, metrics = gmpo_loss(old, lp, adv, mask)
    loss.backward()
    # clipped log-ratios (0, 0.095310, -0.105361, 0.4): the 8.0 token is capped
    r = math.exp((0 + math.log(1.1) + math.log(0.9) + 0.4) / 4)
    assert lp.grad[0].tolist() == pytest.approx([-r / 4, -r / 4, -r / 4, 0.0])
    assert metrics["pg_clipfrac"].item() == 0.25
    assert metrics["pg_clipfrac_lower"].item() == 0.0
    # A < 0: the 0.5 token is floored at -0.4 and counted as lower clipping
    _, metrics = gmpo_loss(*one_sequence((1.0, 1.1, 0.5, 0.9), -1.0))
    assert metrics["pg_clipfrac"].item() == 0.0
    assert metrics["pg_clipfrac_lower"].item() == 0.25


def test_metrics_are_the_documented_names_and_detached():
    b = random_batch(0)
    for name in ("gmpo", "grpo", "gspo"):
        _, metrics = get_policy_loss(name)(*b.args())
        assert set(metrics) == set(METRIC_NAMES)
        for value in metrics.values():
            assert value.dim() == 0 and not value.requires_grad
            assert value.is_floating_point()


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("loss_fn", [gmpo_loss, grpo_loss, gspo_loss])
@pytest.mark.parametrize("field", ["clip_ratio_low", "clip_ratio_high"])
@pytest.mark.parametrize("value", [0.0, -0.1, math.nan, math.inf, True, "0.4", None])
def test_bad_clip_ratio_names_argument_and_value(loss_fn, field, value):
    b = random_batch(0)
    with pytest.raises(ValueError, match=rf"{field} must be a finite number > 0, got {value!r}"):
        loss_fn(*b.args(), **{field: value})


def test_shape_mismatch_names_the_argument():
    b = random_batch(0)
    with pytest.raises(ValueError, match=r"advantages has shape \(12, 8\)"):
        gmpo_loss(b.old_log_prob, b.log_prob, b.advantages[:, :8], b.response_mask)
    with pytest.raises(ValueError, match=r"log_prob must have shape \[batch, tokens\]"):
        gmpo_loss(b.old_log_prob[0], b.log_prob[0], b.advantages[0], b.response_mask[0])
    with pytest.raises(ValueError, match=r"response_mask must be a torch\.Tensor"):
        gmpo_loss(b.old_log_prob, b.log_prob, b.advantages, [[1]])


def test_other_bad_arguments():
    b = random_batch(0)
    with pytest.raises(ValueError, match="num_sequences must be > 0"):
        gmpo_loss(*b.args(), num_sequences=0)
    with pytest.raises(ValueError, match="clip_ratio_c must be a finite number > 1"):
        grpo_loss(*b.args(), clip_ratio_c=1.0)
    with pytest.raises(ValueError, match="loss_agg_mode must be one of token-mean"):
        grpo_loss(*b.args(), loss_agg_mode="mean")
    with pytest.raises(ValueError, match=r"sequence_weights has shape \(3,\)"):
        gmpo_loss(*b.args(), sequence_weights=torch.ones(3))


# ------------------------------------------------------------------ registry


def test_registry_holds_the_three_losses():
    assert {"gmpo", "grpo", "gspo"} <= set(policy_loss_names())
    assert get_policy_loss("gmpo") is gmpo_loss
    assert get_policy_loss("grpo") is grpo_loss
    assert get_policy_loss("gspo") is gspo_loss


def test_unknown_loss_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown policy loss 'geo'; known losses: .*gmpo, grpo"):
        get_policy_loss("geo")


def test_register_new_loss_and_refuse_a_clash():
    @register_policy_loss("test-double-gmpo")
    def doubled(old_log_prob, log_prob, advantages, response_mask, **kw):
        loss, metrics = gmpo_loss(old_log_prob, log_prob, advantages, response_mask, **kw)
        return 2 * loss, metrics

    b = random_batch(1)
    assert get_policy_loss("test-double-gmpo")(*b.args())[0].item() == pytest.approx(
        2 * gmpo_loss(*b.args())[0].item()
    )
    with pytest.raises(ValueError, match="'gmpo' is already registered"):
        register_policy_loss("gmpo")(doubled)


# ------------------------------------------------------------------ gradients


def _gradcheck(fn, b, **kw):
    lp = b.log_prob.detach().double().requires_grad_(True)
    old, adv, mask = (t.double() for t in (b.old_log_prob, b.advantages, b.response_mask))
    assert torch.autograd.gradcheck(lambda x: fn(old, x, adv, mask, **kw)[0], (lp,))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck_gmpo_float64(seed):
    b = random_batch(seed, dtype=torch.float64, scale=0.6)
    _gradcheck(gmpo_loss, b)
    _gradcheck(gmpo_loss, b, clip_ratio_low=0.1, clip_ratio_high=0.25, num_sequences=64)


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_gradcheck_grpo_float64(mode):
    b = random_batch(3, dtype=torch.float64, scale=0.4)
    _gradcheck(grpo_loss, b, loss_agg_mode=mode)


def test_gradcheck_gspo_float64():
    b = random_batch(4, dtype=torch.float64, scale=0.01)
    _gradcheck(gspo_loss, b, clip_ratio_low=0.02, clip_ratio_high=0.03)


# ------------------------------------------------------------------ properties


def _loss_and_grad(fn, old, lp, adv, mask, **kw):
    lp = lp.detach().clone().requires_grad_(True)
    loss, metrics = fn(old, lp, adv, mask, **kw)
    (grad,) = torch.autograd.grad(loss, lp)
    return loss.detach(), grad, metrics


seeds = st.integers(0, 2**16)


@given(seed=seeds, pad=st.integers(1, 6), fill=st.sampled_from([0.0, 7.5, -1e4, math.inf]))
def test_padding_with_masked_tokens_changes_nothing(seed, pad, fill):
    b = random_batch(seed)
    loss, grad, metrics = _loss_and_grad(gmpo_loss, *b.args())
    rows = b.log_prob.shape[0]
    filler = torch.full((rows, pad), fill)
    padded = [
        torch.cat([b.old_log_prob, -filler], 1),
        torch.cat([b.log_prob.detach(), filler], 1),
        torch.cat([b.advantages, filler.nan_to_num(posinf=3.0)], 1),
        torch.cat([b.response_mask, torch.zeros(rows, pad)], 1),
    ]
    loss2, grad2, metrics2 = _loss_and_grad(gmpo_loss, *padded)
    assert loss2.item() == pytest.approx(loss.item(), rel=1e-5, abs=1e-6)
    torch.testing.assert_close(grad2[:, : grad.shape[1]], grad)
    assert torch.all(grad2[:, grad.shape[1] :] == 0)
    for name in METRIC_NAMES:
        assert metrics2[name].item() == pytest.approx(metrics[name].item(), rel=1e-5, abs=1e-6)


@given(seed=seeds)
def test_permuting_rows_changes_nothing(seed):
    b = random_batch(seed)
    perm = torch.randperm(b.log_prob.shape[0], generator=torch.Generator().manual_seed(seed))
    loss, grad, metrics = _loss_and_grad(gmpo_loss, *b.args())
    loss2, grad2, metrics2 = _loss_and_grad(gmpo_loss, *(t[perm] for t in b.args()))
    assert loss2.item() == pytest.approx(loss.item(), rel=1e-5, abs=1e-6)
    torch.testing.assert_close(grad2, grad[perm])
    for name in METRIC_NAMES:
        assert metrics2[name].item() == pytest.approx(metrics[name].item(), rel=1e-5, abs=1e-6)


@given(seed=seeds, low=st.floats(0.05, 1.0), high=st.floats(0.05, 1.0))
def test_clipped_tokens_get_zero_gradient_and_others_do_not(seed, low, high):
    b = random_batch(seed, scale=1.0)
    _, grad, _ = _loss_and_grad(gmpo_loss, *b.args(), clip_ratio_low=low, clip_ratio_high=high)
    log_ratio = (b.log_prob - b.old_log_prob).detach()
    a = b.advantages
    m = b.response_mask.bool()
    clipped = m & (((a > 0) & (log_ratio > high)) | ((a < 0) & (log_ratio < -low)))
    live = m & (a != 0) & ~clipped
    assert torch.all(grad[clipped] == 0)
    assert torch.all(grad[live] != 0)
    assert torch.all(grad[~m] == 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@given(seed=seeds, magnitude=st.sampled_from([50.0, -50.0, 1000.0, -1000.0]))
def test_extreme_log_ratios_give_finite_loss_and_gradient(dtype, seed, magnitude):
    b = random_batch(seed, dtype=dtype)
    spikes = torch.rand(b.log_prob.shape, generator=torch.Generator().manual_seed(seed)) < 0.3
    lp = torch.where(spikes, b.old_log_prob.float() + magnitude, b.log_prob.detach().float())
    for fn in (gmpo_loss, grpo_loss, gspo_loss):
        loss, grad, metrics = _loss_and_grad(
            fn, b.old_log_prob, lp.to(dtype), b.advantages, b.response_mask
        )
        assert loss.dtype == torch.float32
        assert torch.isfinite(loss), fn.__name__
        assert torch.all(torch.isfinite(grad)), fn.__name__
        assert torch.isfinite(metrics["seq_ratio_max"]) or fn is not gmpo_loss


@given(seed=seeds)
def test_on_policy_gmpo_gradient_equals_grpo_seq_mean_token_mean(seed):
    b = random_batch(seed)
    old = b.log_prob.detach()
    rows = old.shape[0]
    loss, g_gmpo, metrics = _loss_and_grad(gmpo_loss, old, old, b.advantages, b.response_mask)
    loss2, g_grpo, _ = _loss_and_grad(
        grpo_loss,
        old,
        old,
        b.advantages,
        b.response_mask,
        loss_agg_mode="seq-mean-token-mean",
        num_sequences=rows,
    )
    torch.testing.assert_close(g_gmpo, g_grpo)
    assert loss.item() == pytest.approx(loss2.item(), abs=1e-6)
    assert metrics["pg_clipfrac"].item() == metrics["pg_clipfrac_lower"].item() == 0.0
    assert metrics["token_ratio_min"].item() == metrics["token_ratio_max"].item() == 1.0


@given(seed=seeds, filler=st.sampled_from([0.0, 5.0, -math.inf]))
def test_empty_response_contributes_zero_and_counts_in_n(seed, filler):
    b = random_batch(seed, edge_cases=False)
    loss, _ = gmpo_loss(*b.args())
    rows = b.log_prob.shape[0]
    row = torch.full_like(b.log_prob[:1], filler).detach()
    empty = (
        torch.cat([b.old_log_prob, torch.zeros_like(row)]),
        torch.cat([b.log_prob.detach(), row]),
        torch.cat([b.advantages, torch.ones_like(row)]),  # advantages under a zero mask
        torch.cat([b.response_mask, torch.zeros_like(row)]),
    )
    loss2, metrics2 = gmpo_loss(*empty)
    assert loss2.item() == pytest.approx(loss.item() * rows / (rows + 1), rel=1e-6)
    assert all(torch.isfinite(v) for v in metrics2.values())


def test_all_responses_empty_gives_zero_loss_and_unit_ratios():
    z = torch.zeros(3, 5)
    loss, metrics = gmpo_loss(z, z.clone().requires_grad_(True), torch.ones(3, 5), z)
    assert loss.item() == 0.0
    assert metrics["token_ratio_min"].item() == metrics["seq_ratio_max"].item() == 1.0
    assert metrics["ppo_kl"].item() == 0.0


def test_half_precision_inputs_are_computed_in_float32():
    b64 = random_batch(5, dtype=torch.float64)
    ref, _ = gmpo_loss(*b64.args())
    b16 = random_batch(5, dtype=torch.bfloat16)
    loss, metrics = gmpo_loss(*b16.args())
    assert loss.dtype == torch.float32 and metrics["ppo_kl"].dtype == torch.float32
    # bf16 rounds the inputs (8 bits of mantissa), the computation itself does not
    assert loss.item() == pytest.approx(ref.item(), rel=3e-2, abs=3e-3)


def test_num_sequences_rescales_the_loss():
    b = random_batch(6)
    loss, _ = gmpo_loss(*b.args())
    loss_n, _ = gmpo_loss(*b.args(), num_sequences=48)
    assert loss_n.item() == pytest.approx(loss.item() * 12 / 48, rel=1e-6)


def test_unclipped_gspo_equals_unclipped_gmpo():
    """Without clipping, GSPO (seq-mean-token-mean) and GMPO coincide in value and gradient."""
    b = random_batch(7, scale=0.2)
    rows = b.log_prob.shape[0]
    wide = {"clip_ratio_low": 19.0, "clip_ratio_high": 19.0}
    l1, g1, _ = _loss_and_grad(gmpo_loss, *b.args(), **wide)
    l2, g2, _ = _loss_and_grad(
        gspo_loss, *b.args(), clip_ratio_low=0.999, clip_ratio_high=1e6, num_sequences=rows
    )
    assert l1.item() == pytest.approx(l2.item(), rel=1e-5)
    torch.testing.assert_close(g1, g2)


# ------------------------------------------------------------------ GRPO aggregation


def test_aggregate_loss_modes_by_hand():
    loss_mat = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [9.0, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert aggregate_loss(loss_mat, mask, "token-mean").item() == pytest.approx(10 / 4)
    assert aggregate_loss(loss_mat, mask, "token-sum").item() == pytest.approx(10)
    assert aggregate_loss(loss_mat, mask, "seq-mean-token-mean").item() == pytest.approx(
        (2 + 4) / 2
    )
    assert aggregate_loss(loss_mat, mask, "seq-mean-token-sum").item() == pytest.approx(5)
    assert aggregate_loss(loss_mat, mask, "seq-mean-token-sum-norm").item() == pytest.approx(5 / 3)
    assert aggregate_loss(loss_mat, mask, "token-mean", num_tokens=8).item() == pytest.approx(
        10 / 8
    )
    got = aggregate_loss(loss_mat, mask, "seq-mean-token-sum", num_sequences=4).item()
    assert got == pytest.approx(10 / 4)


def test_grpo_dual_clip_bounds_negative_advantage_loss():
    old = torch.zeros(1, 2)
    lp = torch.log(torch.tensor([[10.0, 2.0]])).requires_grad_(True)
    adv = torch.full((1, 2), -1.0)
    mask = torch.ones(1, 2)
    loss, metrics = grpo_loss(old, lp, adv, mask)
    # token 1: -A*rho = 10, capped by dual clip at 3; token 2: max(2, 1.2) = 2
    assert loss.item() == pytest.approx((3.0 + 2.0) / 2)
    assert metrics["pg_clipfrac_lower"].item() == 0.5
    loss_off, _ = grpo_loss(old, lp, adv, mask, clip_ratio_c=None)
    assert loss_off.item() == pytest.approx((10.0 + 2.0) / 2)


# ------------------------------------------------------------------ closed form vs autograd


def _reference_gmpo(old, lp, adv, mask, low, high, weights, n):
    """GMPO written as its docstring's formula, differentiated by autograd (float64)."""
    m = mask.bool()
    total = m.sum().clamp(min=1)
    lengths = m.sum(-1)
    denom = lengths.clamp(min=1)
    log_ratio = torch.where(m, lp - old, 0.0).clamp(-20.0, 20.0)
    seq_adv = torch.where(m, adv, 0.0).sum(-1) / denom
    s = torch.sign(seq_adv).unsqueeze(-1)
    clipped = s * torch.minimum(s * log_ratio, s * log_ratio.clamp(-low, high))
    seq_log_ratio = torch.where(m, clipped, 0.0).sum(-1) / denom
    ratio = seq_log_ratio.exp()
    loss = -(weights * seq_adv * ratio).sum() / n
    with torch.no_grad():
        moved = (m & (clipped != log_ratio)).sum(-1)
        nonempty = lengths > 0
        lr = log_ratio[m] if m.any() else torch.zeros(1, dtype=lp.dtype)
        seq = seq_log_ratio[nonempty] if nonempty.any() else torch.zeros(1, dtype=lp.dtype)
        metrics = {
            "ppo_kl": -log_ratio.sum() / total,
            "pg_clipfrac": (moved * (seq_adv > 0)).sum() / total,
            "pg_clipfrac_lower": (moved * (seq_adv < 0)).sum() / total,
            "token_ratio_min": lr.min().exp(),
            "token_ratio_max": lr.max().exp(),
            "seq_ratio_min": seq.min().exp(),
            "seq_ratio_max": seq.max().exp(),
        }
    return loss, metrics


@given(
    seed=seeds,
    low=st.sampled_from([0.4, 0.1, 0.7]),
    high=st.sampled_from([0.4, 0.25]),
    spikes=st.sampled_from([0.0, 30.0, -30.0]),
    fill=st.sampled_from([0.0, math.inf, -math.inf]),
)
def test_closed_form_gradient_equals_autograd_of_the_formula(seed, low, high, spikes, fill):
    """Loss, metrics and the gradient of every input, as autograd gets them from the formula."""
    b = random_batch(seed, dtype=torch.float64, scale=0.6)
    g = torch.Generator().manual_seed(seed)
    rows, tokens = b.log_prob.shape
    lp = b.log_prob.detach().clone()
    lp[torch.rand(rows, tokens, generator=g, dtype=torch.float64) < 0.2] += spikes
    lp[~b.response_mask.bool()] = fill  # padding may hold anything but NaN
    weights = torch.rand(rows, generator=g, dtype=torch.float64) + 0.5
    inputs = [b.old_log_prob, lp, b.advantages, weights]
    got, want = [], []
    for fn in ("ours", "reference"):
        leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
        old, x, adv, w = leaves
        if fn == "ours":
            loss, metrics = gmpo_loss(
                old,
                x,
                adv,
                b.response_mask,
                clip_ratio_low=low,
                clip_ratio_high=high,
                sequence_weights=w,
                num_sequences=20,
            )
        else:
            loss, metrics = _reference_gmpo(old, x, adv, b.response_mask, low, high, w, 20)
        grads = torch.autograd.grad(loss, leaves)
        (got if fn == "ours" else want).append((loss, grads, metrics))
    (loss, grads, metrics), (ref_loss, ref_grads, ref_metrics) = got[0], want[0]
    torch.testing.assert_close(loss, ref_loss)
    names = ("old", "log_prob", "advantages", "weights")
    for name, g1, g2 in zip(names, grads, ref_grads, strict=True):
        torch.testing.assert_close(g1, g2, msg=f"gradient of {name}")
    for name in METRIC_NAMES:
        torch.testing.assert_close(
            metrics[name], ref_metrics[name].to(metrics[name].dtype), msg=name
        )


def test_the_registry_holds_exactly_the_losses_the_config_offers():
    from gmpo_kfp.config import AlgorithmConfig
    from gmpo_kfp.names import LOSS_NAMES

    assert set(LOSS_NAMES) <= set(policy_loss_names())  # tests may register more
    assert AlgorithmConfig.__dataclass_fields__["loss"].metadata["choices"] == LOSS_NAMES

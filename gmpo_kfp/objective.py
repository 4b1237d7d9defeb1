"""Policy-gradient objectives as pure torch functions: GMPO, GRPO (PPO clip) and GSPO.

Every loss takes four tensors of shape ``[B, T]`` (B sequences, T response
positions) and returns ``(loss, metrics)``:

- ``old_log_prob``: log pi_old(o_t | q, o_<t), from the policy that sampled the batch;
- ``log_prob``: log pi_theta of the same tokens under the policy being trained;
- ``advantages``: per-token advantages (group-relative outcome advantages give one
  value per sequence, repeated over its tokens);
- ``response_mask``: 1 on response tokens, 0 on padding (bool, int or float).

``loss`` is a 0-d tensor to minimise. ``metrics`` maps the unprefixed names in
:data:`METRIC_NAMES` to detached 0-d float tensors (no host sync here; callers that
log them call ``.item()`` once).

Computation runs in float32 at least (bf16/fp16 inputs are upcast; float64 stays
float64, which ``torch.autograd.gradcheck`` needs). The losses live in a registry
(:func:`register_policy_loss`, :func:`get_policy_loss`) as verl's ``core_algos`` does.

Notation in the docstrings: l_t = log_prob_t - old_log_prob_t (the token log-ratio),
m_t the mask, |o_i| = sum_t m_{i,t}, rho_t = exp(l_t).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from gmpo_kfp.names import LOSS_AGG_MODES

__all__ = [
    "LOG_RATIO_SAFETY_BOUND",
    "LOSS_AGG_MODES",
    "METRIC_NAMES",
    "PolicyLoss",
    "aggregate_loss",
    "get_policy_loss",
    "gmpo_loss",
    "grpo_loss",
    "gspo_loss",
    "policy_loss_names",
    "register_policy_loss",
]

#: Metric names every loss returns (unprefixed; verl-facing code adds ``actor/``).
METRIC_NAMES = (
    "ppo_kl",
    "pg_clipfrac",
    "pg_clipfrac_lower",
    "token_ratio_min",
    "token_ratio_max",
    "seq_ratio_min",
    "seq_ratio_max",
)

#: Token log-ratios are kept within +-this bound before any exp. It changes
#: nothing unless a ratio exceeds e^20 (about 4.9e8), and keeps GMPO's unclipped
#: side (A < 0 has no upper cap) from overflowing. verl's PPO loss uses the same bound.
LOG_RATIO_SAFETY_BOUND = 20.0


class PolicyLoss(Protocol):
    """The shape every registered loss has."""

    def __call__(
        self,
        old_log_prob: Tensor,
        log_prob: Tensor,
        advantages: Tensor,
        response_mask: Tensor,
        **kwargs: object,
    ) -> tuple[Tensor, dict[str, Tensor]]: ...


_POLICY_LOSSES: dict[str, PolicyLoss] = {}


def register_policy_loss(name: str) -> Callable[[PolicyLoss], PolicyLoss]:
    """Decorator that registers a policy loss under ``name``.

    Raises ``ValueError`` if ``name`` is already taken by another function.
    """

    def decorator(fn: PolicyLoss) -> PolicyLoss:
        existing = _POLICY_LOSSES.get(name)
        if existing is not None and existing is not fn:
            raise ValueError(
                f"policy loss {name!r} is already registered ({existing.__module__}."
                f"{existing.__qualname__}); pick another name"
            )
        _POLICY_LOSSES[name] = fn
        return fn

    return decorator


def get_policy_loss(name: str) -> PolicyLoss:
    """Return the loss registered as ``name``; ``ValueError`` lists the known names."""
    try:
        return _POLICY_LOSSES[name]
    except KeyError:
        known = ", ".join(sorted(_POLICY_LOSSES))
        raise ValueError(f"unknown policy loss {name!r}; known losses: {known}") from None


def policy_loss_names() -> list[str]:
    """Names of every registered loss, sorted."""
    return sorted(_POLICY_LOSSES)


# --------------------------------------------------------------------------- checks


def _check_clip(name: str, value: object, *, above: float = 0.0) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= above:
        raise ValueError(f"{name} must be a finite number > {above:g}, got {value!r}")
    return float(value)


def _check_tensors(
    old_log_prob: Tensor, log_prob: Tensor, advantages: Tensor, response_mask: Tensor
) -> None:
    named = {
        "old_log_prob": old_log_prob,
        "log_prob": log_prob,
        "advantages": advantages,
        "response_mask": response_mask,
    }
    for name, t in named.items():
        if not isinstance(t, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if log_prob.dim() != 2:
        raise ValueError(f"log_prob must have shape [batch, tokens], got {tuple(log_prob.shape)}")
    for name, t in named.items():
        if t.shape != log_prob.shape:
            raise ValueError(
                f"{name} has shape {tuple(t.shape)}; it must match log_prob's "
                f"{tuple(log_prob.shape)}"
            )


def _check_count(name: str, value: float | int | None) -> None:
    if value is None:
        return
    ok = isinstance(value, (int, float, Tensor)) and not isinstance(value, bool)
    if not ok or not float(value) > 0:
        raise ValueError(f"{name} must be > 0 when given, got {value!r}")


def _compute_dtype(t: Tensor) -> torch.dtype:
    """float32 for half/bf16/float32 inputs, float64 for float64."""
    return torch.promote_types(t.dtype, torch.float32)


def _rowdot(x: Tensor, mask: Tensor) -> Tensor:
    """sum_t x_{i,t} m_{i,t} for every row, as one batched matmul (no [B, T] temporary)."""
    return torch.matmul(x.unsqueeze(-2), mask.unsqueeze(-1)).reshape(x.shape[0])


def _masked_range(
    log_ratio: Tensor, m: Tensor, lengths: Tensor, mean: Tensor
) -> tuple[float, float]:
    """min and max of ``log_ratio`` over masked positions (padding holds 0), as floats.

    One pass in the usual case: the range of the whole tensor is the masked range
    unless an end of it is the padding's 0; only then the padding is filled with the
    masked mean (which lies inside the masked range) and the range taken again. No
    masked token at all gives (0, 0), a ratio of 1.
    """
    lo, hi = (float(v) for v in torch.aminmax(log_ratio))
    if (lo == 0.0 or hi == 0.0) and bool((lengths < m.shape[-1]).any()):
        filled = torch.where(m.bool(), log_ratio, mean)
        lo, hi = (float(v) for v in torch.aminmax(filled))
    return lo, hi


class _Masked(NamedTuple):
    """The response mask in the forms every loss needs, and the compute dtype."""

    dtype: torch.dtype
    bool: Tensor  # [B, T] bool
    float: Tensor  # [B, T] in dtype
    lengths: Tensor  # [B] |o_i| in dtype


def _prepare(
    old_log_prob: Tensor, log_prob: Tensor, advantages: Tensor, response_mask: Tensor
) -> _Masked:
    _check_tensors(old_log_prob, log_prob, advantages, response_mask)
    dtype = _compute_dtype(log_prob)
    mask_bool = response_mask.bool()
    mask = mask_bool.to(dtype)
    return _Masked(dtype, mask_bool, mask, mask.sum(-1))


def _ppo_surrogate(adv: Tensor, ratio: Tensor, low: float, high: float) -> tuple[Tensor, Tensor]:
    """max(-a rho, -a clip(rho, 1 - low, 1 + high)) and where the clipped term is active."""
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - low, 1.0 + high)
    return torch.maximum(unclipped, clipped), (clipped > unclipped).detach()


# --------------------------------------------------------------------------- metrics


@torch.no_grad()
def _clip_metrics(
    log_ratio: Tensor,
    m: _Masked,
    seq_log_ratio: Tensor,
    upper_count: Tensor,
    lower_count: Tensor | None,
) -> dict[str, Tensor]:
    """All of :data:`METRIC_NAMES`; clip fractions from counts of masked clipped tokens."""
    metrics = _ratio_metrics(log_ratio, m.bool, m.lengths, seq_log_ratio)
    total = m.lengths.sum().clamp(min=1)
    metrics["pg_clipfrac"] = upper_count / total
    metrics["pg_clipfrac_lower"] = (
        total.new_zeros(()) if lower_count is None else lower_count / total
    )
    return metrics


@torch.no_grad()
def _ratio_metrics(
    log_ratio: Tensor,
    mask_bool: Tensor,
    lengths: Tensor,
    seq_log_ratio: Tensor,
) -> dict[str, Tensor]:
    """ppo_kl and the token / sequence ratio ranges over masked positions.

    Unmasked positions are never read (padding may hold anything, +-inf included).
    The range takes one pass: unmasked positions are filled with the masked mean,
    which lies between the masked minimum and maximum, so ``aminmax`` over the
    filled tensor is the masked range. An empty batch reports ratios of 1.
    """
    total = lengths.sum().clamp(min=1)
    mean_log_ratio = torch.where(mask_bool, log_ratio, 0.0).sum() / total
    lo, hi = torch.aminmax(torch.where(mask_bool, log_ratio, mean_log_ratio))
    nonempty = lengths > 0
    n_rows = nonempty.sum().clamp(min=1)
    mean_seq = (seq_log_ratio * nonempty).sum() / n_rows
    slo, shi = torch.aminmax(torch.where(nonempty, seq_log_ratio, mean_seq))
    return {
        "ppo_kl": -mean_log_ratio,
        "token_ratio_min": lo.exp(),
        "token_ratio_max": hi.exp(),
        "seq_ratio_min": slo.exp(),
        "seq_ratio_max": shi.exp(),
    }


def aggregate_loss(
    loss_mat: Tensor,
    mask: Tensor,
    loss_agg_mode: str,
    *,
    num_tokens: float | Tensor | None = None,
    num_sequences: float | Tensor | None = None,
    loss_scale_factor: float | None = None,
) -> Tensor:
    """Reduce a ``[B, T]`` per-token loss to a scalar (verl's ``agg_loss`` modes).

    - ``token-mean``: sum_{i,t} m L / N_tok, N_tok = ``num_tokens`` or sum m.
    - ``token-sum``: sum_{i,t} m L.
    - ``seq-mean-token-mean``: sum_i (sum_t m L / |o_i|) / N_seq.
    - ``seq-mean-token-sum``: sum_i (sum_t m L) / N_seq.
    - ``seq-mean-token-sum-norm``: the previous one / ``loss_scale_factor`` (default T).

    N_seq = ``num_sequences`` or, as in verl, the number of non-empty rows. Passing
    the global token / sequence counts makes the sum over micro-batches equal the
    mini-batch loss.
    """
    if loss_agg_mode not in LOSS_AGG_MODES:
        raise ValueError(
            f"loss_agg_mode must be one of {', '.join(LOSS_AGG_MODES)}; got {loss_agg_mode!r}"
        )
    _check_count("num_tokens", num_tokens)
    _check_count("num_sequences", num_sequences)
    _check_count("loss_scale_factor", loss_scale_factor)
    if loss_agg_mode == "token-mean":
        n = mask.sum() if num_tokens is None else num_tokens
        return _rowdot(loss_mat, mask).sum() / n
    if loss_agg_mode == "token-sum":
        return _rowdot(loss_mat, mask).sum()
    lengths = mask.sum(-1)
    seq = _rowdot(loss_mat, mask)
    if loss_agg_mode == "seq-mean-token-mean":
        seq = seq / lengths.clamp(min=1)
    n = (lengths > 0).sum() if num_sequences is None else num_sequences
    loss = seq.sum() / n
    if loss_agg_mode == "seq-mean-token-sum-norm":
        loss = loss / (mask.shape[-1] if loss_scale_factor is None else loss_scale_factor)
    return loss


# --------------------------------------------------------------------------- GMPO


@register_policy_loss("gmpo")
def gmpo_loss(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    *,
    clip_ratio_low: float = 0.4,
    clip_ratio_high: float = 0.4,
    num_sequences: float | None = None,
    sequence_weights: Tensor | None = None,
    compiled: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Geometric-Mean Policy Optimization loss (arXiv 2507.20673).

    For each sequence i::

        A_i   = sum_t m_t a_{i,t} / |o_i|                      (sequence advantage)
        s_i   = sign(A_i)
        c_t   = clamp(l_t, -eps_low, +eps_high)
        l~_t  = s_i * min(s_i * l_t, s_i * c_t)                (sign-aware token clip)
        R_i   = exp( sum_t m_t l~_t / |o_i| )                   (geometric-mean ratio)
        loss  = - sum_i w_i A_i R_i / N

    so for A_i > 0 a token's log-ratio is capped above at +eps_high, for A_i < 0 below
    at -eps_low, and a capped token gets no gradient. eps are log-space bounds:
    0.4 keeps token ratios in [e^-0.4, e^0.4] = [0.670, 1.492].

    Args:
        clip_ratio_low, clip_ratio_high: eps_low, eps_high; finite and > 0.
        num_sequences: N, the number of sequences the loss averages over (default:
            rows in this batch, empty ones included, as verl's ``geo_mean``). Pass the
            global mini-batch size to make micro-batch losses sum to the mini-batch loss.
        sequence_weights: optional ``[B]`` weights w_i (e.g. rollout importance
            weights); default 1.
        compiled: run the ``[B, T]`` work through ``torch.compile``: the forward as one
            pass of per-row reductions (:func:`_geo_mean_core`), the backward as one pass
            that recomputes which tokens the clip kept (:func:`_geo_mean_kept_grad`),
            instead of about twenty eager passes; a C++ compiler on a CPU, Triton on a
            GPU. The first call per dtype compiles (4-25 s here); it pays at large
            ``[B, T]`` (3x the memory bound in bfloat16 at [256, 4096], eager 8x), not
            for a tiny model.

    Numerics: log-ratios are first held within +-:data:`LOG_RATIO_SAFETY_BOUND`
    (a no-op unless a ratio exceeds e^20) so the unclipped side cannot overflow
    and padding holding +-inf stays harmless (a token held there gets no gradient, as
    under verl's clamp); A_i = 0 rows contribute 0 and have R_i = 1 (s_i = 0); a row
    with no masked token has R_i = 1 and A_i = 0 (never NaN) and still counts in N.
    The gradient is computed in closed form (:class:`_GeoMeanLoss`), for
    ``log_prob`` and, where they require grad, ``old_log_prob``, ``advantages`` and
    ``sequence_weights``.

    Metrics: ``ppo_kl`` (masked mean of -l, l within the safety bound, as verl),
    ``pg_clipfrac`` / ``pg_clipfrac_lower`` (fraction of masked tokens whose
    log-ratio the clip actually replaced, in rows with A > 0 / A < 0: unlike verl's
    ``geo_mean``, which counts every token outside the window when A > 0), token
    ratio range (min/max of rho over masked tokens) and sequence ratio range
    (min/max of R_i over non-empty rows).
    """
    low = _check_clip("clip_ratio_low", clip_ratio_low)
    high = _check_clip("clip_ratio_high", clip_ratio_high)
    _check_count("num_sequences", num_sequences)
    _check_tensors(old_log_prob, log_prob, advantages, response_mask)
    if sequence_weights is not None and sequence_weights.shape != log_prob.shape[:1]:
        raise ValueError(
            f"sequence_weights has shape {tuple(sequence_weights.shape)}; "
            f"expected ({log_prob.shape[0]},), one weight per row"
        )
    n = max(log_prob.shape[0], 1) if num_sequences is None else num_sequences
    loss, stats = _GeoMeanLoss.apply(
        old_log_prob, log_prob, advantages, response_mask, sequence_weights, low, high, n, compiled
    )
    return loss, dict(zip(METRIC_NAMES, stats.unbind(), strict=True))


def _geo_mean_eager(old_log_prob, log_prob, advantages, response_mask, low, high, bound):
    """GMPO's ``[B, T]`` work in eager torch: every op in place or into a buffer of its dtype.

    Returns ``(k m, |o|, A, mean clipped log-ratio per row, sum of l, min l, max l, tokens
    the clip replaced per row)``: k m in ``log_prob``'s dtype (exact for a 0/1 mask; the
    backward multiplies it in that dtype), the per-row values ``[B]`` and the sum and
    range 0-d in the compute dtype (:func:`_geo_mean_core` is the same, for a compiler).
    Mixed-dtype elementwise ops take a slow path on the CPU, so a float32 call allocates
    two ``[B, T]`` buffers (l, then k m); bf16 inputs reuse their own upcast copies.
    """
    dtype = _compute_dtype(log_prob)
    m = response_mask.to(dtype)
    lengths = m.sum(-1)
    denom = lengths.clamp(min=1)

    # l_t, held within the safety bound, zero on padding (which may hold +-inf).
    lp, old = log_prob.to(dtype), old_log_prob.to(dtype)
    log_ratio = torch.sub(lp, old) if lp is log_prob else lp.sub_(old)
    scratch = old if old is not old_log_prob else torch.empty_like(log_ratio)
    adv = advantages.to(dtype)
    adv = adv.mul_(m) if adv is not advantages else torch.mul(adv, m, out=scratch)
    seq_adv = adv.sum(-1) / denom
    sign = torch.sign(seq_adv)
    log_ratio.clamp_(-bound, bound).mul_(m)
    total_log_ratio = log_ratio.sum()
    mean = total_log_ratio / lengths.sum().clamp(min=1)
    lo, hi = _masked_range(log_ratio, m, lengths, mean)

    # s_i l_t, clipped on its sign's side: min(s l, eps_s); k_t = 1 where not clipped
    signed = log_ratio.mul_(sign.unsqueeze(-1))
    eps_low, eps_high = min(low, bound), min(high, bound)
    cap = eps_high if eps_low == eps_high else torch.where(sign > 0, eps_high, eps_low)
    if isinstance(cap, Tensor):
        cap = cap.to(dtype).unsqueeze(-1)
    kept = torch.le(signed, cap, out=scratch)
    signed.clamp_(max=cap)
    kept.mul_(m)
    moved = lengths - kept.sum(-1)  # masked tokens the clip replaced, per row
    if max(-lo, hi) >= bound:  # a token held by the safety bound gets no gradient
        kept.mul_(torch.gt(signed, -bound).to(dtype))
    seq_log_ratio = signed.sum(-1).mul_(sign) / denom
    lo_hi = log_ratio.new_tensor([lo, hi])
    kept = kept if kept.dtype == log_prob.dtype else kept.to(log_prob.dtype)
    return kept, lengths, seq_adv, seq_log_ratio, total_log_ratio, lo_hi[0], lo_hi[1], moved


def _geo_mean_core(old_log_prob, log_prob, advantages, response_mask, low, high, bound):
    """:func:`_geo_mean_eager`'s returns as per-row reductions, for ``torch.compile`` to fuse
    into one pass over ``[B, T]``; k m is not made here (``None``), :func:`_geo_mean_kept_grad`
    recomputes it in the backward. ``low`` and ``high`` are 0-d tensors within ``bound``
    (:func:`_clip_tensors`).

    The clip's side depends on sign(A_i), itself a reduction over the row, so every row
    reduces both sides at once (sum_t min(l_t, eps_high) and sum_t max(l_t, -eps_low), and
    how many tokens each replaces) and A_i's sign picks one; nothing reads ``[B, T]`` twice.
    The mask enters by products only: a ``torch.where`` on ``[B, T]`` compiles to a loop
    several times slower here (2-3 ms against 0.2 ms at [256, 4096]).
    """
    dtype = _compute_dtype(log_prob)
    m = response_mask.to(dtype)
    log_ratio = (log_prob.to(dtype) - old_log_prob.to(dtype)).clamp(-bound, bound) * m
    lengths = m.sum(-1)
    denom = lengths.clamp(min=1)
    seq_adv = (advantages.to(dtype) * m).sum(-1) / denom
    up = log_ratio.clamp(max=high).sum(-1)  # A_i > 0: sum_t min(l_t, eps_high)
    down = log_ratio.clamp(min=-low).sum(-1)  # A_i < 0: sum_t max(l_t, -eps_low)
    moved_up = (log_ratio > high).to(dtype).sum(-1)
    moved_down = (log_ratio < -low).to(dtype).sum(-1)
    # padding lifted above (pushed below) every log-ratio, which the bound holds
    fill = (1 - m) * (3 * bound)
    row_lo = (log_ratio + fill).amin(-1)
    row_hi = (log_ratio - fill).amax(-1)
    sum_log_ratio = log_ratio.sum(-1).sum()
    up_side, down_side, nonempty = seq_adv > 0, seq_adv < 0, lengths > 0
    seq_log_ratio = torch.where(up_side, up, torch.where(down_side, down, 0.0)) / denom
    moved = torch.where(up_side, moved_up, torch.where(down_side, moved_down, 0.0))
    any_masked = nonempty.any()
    lo = torch.where(any_masked, torch.where(nonempty, row_lo, math.inf).amin(), 0.0)
    hi = torch.where(any_masked, torch.where(nonempty, row_hi, -math.inf).amax(), 0.0)
    return None, lengths, seq_adv, seq_log_ratio, sum_log_ratio, lo, hi, moved


def _geo_mean_kept_grad(old_log_prob, log_prob, response_mask, sign, cap, coef, bound):
    """``k m * coef`` in ``log_prob``'s dtype, k recomputed from the inputs as
    :func:`_geo_mean_eager` clips (the compiled backward: one pass, no saved ``[B, T]``).
    ``sign``, ``cap`` and ``coef`` are ``[B, 1]``: s_i, the clip on s_i l's side, the
    per-row factor; products only, as in :func:`_geo_mean_core`."""
    dtype = _compute_dtype(log_prob)
    signed = (log_prob.to(dtype) - old_log_prob.to(dtype)).clamp(-bound, bound) * sign
    m = response_mask.to(dtype)
    kept = (signed <= cap).to(dtype) * (signed > -bound).to(dtype) * m
    return kept.to(log_prob.dtype) * coef


def _geo_mean_finish(kept, lengths, seq_adv, seq_log_ratio, sum_log_ratio, lo, hi, moved, weights):
    """From the ``[B, T]`` work's returns to what :class:`_GeoMeanLoss` keeps: ``(sum_i w_i A_i
    R_i, stats in the order of METRIC_NAMES, k m, A, R, max(|o|, 1), w)``; ``[B]`` ops only."""
    denom = lengths.clamp(min=1)
    total = lengths.sum().clamp(min=1)
    sign = torch.sign(seq_adv)
    ratio = seq_log_ratio.exp()
    w = None if weights is None else weights.to(ratio.dtype)
    objective = (seq_adv * ratio if w is None else seq_adv * ratio * w).sum()
    nonempty = lengths > 0
    mean_seq = (seq_log_ratio * nonempty).sum() / nonempty.sum().clamp(min=1)
    slo, shi = torch.aminmax(torch.where(nonempty, seq_log_ratio, mean_seq))
    stats = torch.stack(
        [
            -sum_log_ratio / total,
            (moved * (sign > 0)).sum() / total,
            (moved * (sign < 0)).sum() / total,
            lo.exp(),
            hi.exp(),
            slo.exp(),
            shi.exp(),
        ]
    )
    return objective, stats, kept, seq_adv, ratio, denom, w


def _geo_mean_forward(
    old_log_prob, log_prob, advantages, response_mask, weights, low, high, core=_geo_mean_eager
):
    """GMPO's forward: the ``[B, T]`` work (``core``: :func:`_geo_mean_eager`, or its pure
    twin :func:`_geo_mean_core` for a compiler), then :func:`_geo_mean_finish`."""
    work = core(
        old_log_prob, log_prob, advantages, response_mask, low, high, LOG_RATIO_SAFETY_BOUND
    )
    return _geo_mean_finish(*work, weights)


#: Inductor options of the compiled loss: with dynamic shapes inductor left every loop
#: on one thread here (torch 2.13, 2 cores: 0.75 ms against 0.45 ms at [256, 4096]);
#: ``dynamic_threads`` gives each loop a parallel region and lets OpenMP size it.
_INDUCTOR_OPTIONS = {"cpp.dynamic_threads": True}


@functools.cache
def _compiled_forward() -> Callable:
    """:func:`_geo_mean_forward` of :func:`_geo_mean_core`, compiled once per process."""
    pure = functools.partial(_geo_mean_forward, core=_geo_mean_core)
    return torch.compile(pure, dynamic=True, options=_INDUCTOR_OPTIONS)


def _clip_tensors(low: float, high: float, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """eps_low and eps_high within the safety bound, as 0-d tensors for the compiled
    functions. Python floats become symbols under ``dynamic=True``, and torch 2.13
    compiled :func:`_geo_mean_forward` of eps_low 0.2 and eps_high 0.6 clamping at -0.4
    (seen with inputs that required grad), so no float but the bound reaches a graph."""
    bound = LOG_RATIO_SAFETY_BOUND
    return torch.tensor(min(low, bound), dtype=dtype), torch.tensor(min(high, bound), dtype=dtype)


@functools.cache
def _compiled_kept_grad() -> Callable:
    """:func:`_geo_mean_kept_grad`, compiled once per process."""
    return torch.compile(_geo_mean_kept_grad, dynamic=True, options=_INDUCTOR_OPTIONS)


class _GeoMeanLoss(torch.autograd.Function):
    """:func:`gmpo_loss` with its gradient in closed form: few passes over ``[B, T]``.

    The loss is -sum_i w_i A_i R_i / N. A_i (a masked mean of the advantages) moves
    the clip only through its sign, so for every input the gradient is one product
    of a ``[B, T]`` tensor and a per-row coefficient::

        dL/d log_prob_t     = -w_i A_i R_i k_t m_t / (N |o_i|),  k_t = 1 if token t is not clipped
        dL/d old_log_prob_t = -dL/d log_prob_t
        dL/d a_t            = -w_i R_i m_t / (N |o_i|)
        dL/d w_i            = -A_i R_i / N

    The eager forward keeps k m (the only ``[B, T]`` it makes and saves besides the
    mask) and computes every metric in the same passes (:func:`_geo_mean_forward`);
    compiled (``compiled=True``), it saves the log-prob inputs themselves (no copy) and
    the backward recomputes k in its one pass. With s_i = sign(A_i) the sign-aware clip
    is one clamp of s_i l_t from above: s_i min(s_i l, eps_s).
    """

    @staticmethod
    def forward(
        ctx, old_log_prob, log_prob, advantages, response_mask, weights, low, high, n, compiled
    ):
        if compiled:
            forward = _compiled_forward()
            low, high = _clip_tensors(low, high, _compute_dtype(log_prob))
        else:
            forward = _geo_mean_forward
        objective, stats, kept, seq_adv, ratio, denom, w = forward(
            old_log_prob, log_prob, advantages, response_mask, weights, low, high
        )
        loss = -objective / n
        ctx.mark_non_differentiable(stats)
        # compiled: k m is recomputed from the inputs (None here), eager: kept
        inputs = (old_log_prob, log_prob) if kept is None else (None, None)
        ctx.save_for_backward(kept, response_mask, seq_adv, ratio, denom, w, *inputs)
        ctx.n, ctx.clip = n, (low, high)
        w_dtype = None if weights is None else weights.dtype
        ctx.dtypes = (old_log_prob.dtype, log_prob.dtype, advantages.dtype, w_dtype)
        return loss, stats

    @staticmethod
    def backward(ctx, grad_loss, _grad_stats):
        kept, response_mask, seq_adv, ratio, denom, w, old, lp = ctx.saved_tensors
        old_dtype, lp_dtype, adv_dtype, w_dtype = ctx.dtypes
        need_old, need_lp, need_adv, _, need_w = ctx.needs_input_grad[:5]
        scale = -grad_loss / ctx.n
        per_row = ratio * scale if w is None else ratio * w * scale  # -w R g / N
        grad_old = grad_lp = grad_adv = grad_w = None
        if need_lp or need_old:
            # k m is 0 or 1 in log_prob's dtype: rounding coef first rounds the product alike
            coef = (per_row * seq_adv / denom).unsqueeze(-1).to(lp_dtype)
            if kept is None:
                low, high = ctx.clip
                sign = torch.sign(seq_adv).unsqueeze(-1)
                cap = torch.where(sign > 0, high, low)
                grad = _compiled_kept_grad()(
                    old, lp, response_mask, sign, cap, coef, LOG_RATIO_SAFETY_BOUND
                )
            else:
                grad = kept * coef
            grad_lp = grad if need_lp else None
            grad_old = (-grad).to(old_dtype) if need_old else None
        if need_adv:
            m = response_mask.to(denom.dtype)
            grad_adv = (m * (per_row / denom).unsqueeze(-1)).to(adv_dtype)
        if need_w:
            grad_w = (seq_adv * ratio * scale).to(w_dtype)
        return grad_old, grad_lp, grad_adv, None, grad_w, None, None, None, None


# --------------------------------------------------------------------------- GRPO


@register_policy_loss("grpo")
def grpo_loss(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    *,
    clip_ratio_low: float = 0.2,
    clip_ratio_high: float = 0.2,
    clip_ratio_c: float | None = 3.0,
    loss_agg_mode: str = "token-mean",
    num_tokens: float | None = None,
    num_sequences: float | None = None,
    loss_scale_factor: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """GRPO's token-level PPO-clip loss (the arithmetic mean), with optional dual clip.

    Per token::

        rho_t = exp(clamp(l_t, -20, 20))
        L_t   = max(-a_t rho_t, -a_t clip(rho_t, 1 - eps_low, 1 + eps_high))
        L_t   = min(L_t, -a_t c)          where a_t < 0 and dual clip is on (c > 1)

    then reduced by :func:`aggregate_loss` with ``loss_agg_mode``. Bounds here are
    ratio-space (0.2 -> [0.8, 1.2]), as in PPO. ``clip_ratio_c=None`` turns the dual
    clip off; verl's default is 3.0.

    Metrics as verl's ``vanilla`` loss: ``pg_clipfrac`` the fraction of masked tokens
    where the clipped term is the active one (either sign of a), ``pg_clipfrac_lower``
    where the dual clip is active; plus ``ppo_kl`` and the ratio ranges (sequence
    ratio = exp of the masked mean log-ratio, the geometric mean).
    """
    low = _check_clip("clip_ratio_low", clip_ratio_low)
    high = _check_clip("clip_ratio_high", clip_ratio_high)
    if clip_ratio_c is not None:
        _check_clip("clip_ratio_c", clip_ratio_c, above=1.0)
    m = _prepare(old_log_prob, log_prob, advantages, response_mask)
    adv = advantages.to(m.dtype)

    log_ratio = log_prob.to(m.dtype) - old_log_prob.to(m.dtype)
    bound = LOG_RATIO_SAFETY_BOUND
    ratio = torch.clamp(log_ratio, -bound, bound).exp()
    pg, clip_active = _ppo_surrogate(adv, ratio, low, high)
    dual_active = None
    if clip_ratio_c is not None:
        dual = -adv * clip_ratio_c
        dual_active = ((pg > dual) & (adv < 0)).detach()
        pg = torch.where(adv < 0, torch.minimum(pg, dual), pg)
    loss = aggregate_loss(
        pg,
        m.float,
        loss_agg_mode,
        num_tokens=num_tokens,
        num_sequences=num_sequences,
        loss_scale_factor=loss_scale_factor,
    )
    with torch.no_grad():
        seq_log_ratio = _rowdot(log_ratio, m.float) / m.lengths.clamp(min=1)
        dual_count = None if dual_active is None else (dual_active & m.bool).sum()
        metrics = _clip_metrics(
            log_ratio.detach(), m, seq_log_ratio, (clip_active & m.bool).sum(), dual_count
        )
    return loss, metrics


# --------------------------------------------------------------------------- GSPO


@register_policy_loss("gspo")
def gspo_loss(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    *,
    clip_ratio_low: float = 3e-4,
    clip_ratio_high: float = 4e-4,
    loss_agg_mode: str = "seq-mean-token-mean",
    num_tokens: float | None = None,
    num_sequences: float | None = None,
    loss_scale_factor: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Group Sequence Policy Optimization loss (arXiv 2507.18071), sequence-level clip.

    GSPO averages the token log-ratios first and clips the sequence ratio (which can
    zero a whole sequence), where GMPO clips each token first::

        s_i      = exp( sum_t m_t l_t / |o_i| )
        s_{i,t}  = sg[s_i] * pi_theta(o_t) / sg[pi_theta(o_t)]   (value s_i, token gradient)
        L_t      = max(-a_t s_{i,t}, -a_t clip(s_{i,t}, 1 - eps_low, 1 + eps_high))

    reduced by ``loss_agg_mode`` (the paper's ``seq-mean-token-mean`` by default).
    The log of s_{i,t} is capped at 10 as in verl. Defaults are the GSPO paper's
    ratio-space bounds (3e-4, 4e-4). Metrics: ``pg_clipfrac`` as verl (clipped term
    active, either sign), ``pg_clipfrac_lower`` 0 (GSPO has no dual clip).
    """
    low = _check_clip("clip_ratio_low", clip_ratio_low)
    high = _check_clip("clip_ratio_high", clip_ratio_high)
    m = _prepare(old_log_prob, log_prob, advantages, response_mask)
    adv = advantages.to(m.dtype)
    lp = log_prob.to(m.dtype)

    log_ratio = (lp - old_log_prob.to(m.dtype)).detach()
    seq_log_ratio = _rowdot(log_ratio, m.float) / m.lengths.clamp(min=1)
    token_log_ratio = torch.clamp(lp - lp.detach() + seq_log_ratio.unsqueeze(-1), max=10.0)
    pg, clip_active = _ppo_surrogate(adv, token_log_ratio.exp(), low, high)
    loss = aggregate_loss(
        pg,
        m.float,
        loss_agg_mode,
        num_tokens=num_tokens,
        num_sequences=num_sequences,
        loss_scale_factor=loss_scale_factor,
    )
    with torch.no_grad():
        metrics = _clip_metrics(log_ratio, m, seq_log_ratio, (clip_active & m.bool).sum(), None)
    return loss, metrics

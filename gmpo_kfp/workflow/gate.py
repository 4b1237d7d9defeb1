"""The registration gate: promote a new model only when it beats the one in production.

A scheduled retrain that comes out worse than the model already serving must not
replace it. The evaluate step scores the registry's ``production`` version (the
champion) beside the new model (the challenger), on the same problems with the same
protocol, and :func:`decide` passes the challenger when all of these hold:

- its mean Pass@1 reaches ``threshold`` (an absolute floor, as before);
- on no benchmark is it worse than the champion by more than ``tolerance``;
- its mean beats the champion's by at least ``margin``.

Without a champion (the first registration) the floor alone decides. The reason is
one line, for the log and the step's metadata; the champion's version goes into the
registered manifest.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from gmpo_kfp.errors import UserError

DEFAULT_TOLERANCE = 0.02
DEFAULT_MARGIN = 0.01


class GateError(UserError, ValueError):
    """A gate setting is out of range; the message names the parameter and the fix."""


@dataclass(frozen=True)
class Gate:
    """How a challenger is judged (the pipeline's ``threshold``, ``tolerance``, ``margin``)."""

    threshold: float = 0.0  #: the mean Pass@1 a model needs at least, champion or not
    tolerance: float = DEFAULT_TOLERANCE  #: how much worse than the champion a benchmark may be
    margin: float = DEFAULT_MARGIN  #: how much better than the champion's the mean must be

    def __post_init__(self) -> None:
        # a threshold above 1 is allowed: a gate nothing passes (e.g. to train and not register)
        for name, low, high in (
            ("threshold", 0.0, math.inf),
            ("tolerance", 0.0, 1.0),
            ("margin", -1.0, 1.0),
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise GateError(f"{name}: {value!r} is not a number; give one from {low} to {high}")
            if not low <= value <= high:
                raise GateError(f"{name}: {value} is out of range; give one from {low} to {high}")


@dataclass(frozen=True)
class Champion:
    """The registry's production version as scored in this evaluation."""

    version: int
    pass_at_1: dict[str, float]
    mean: float


@dataclass(frozen=True)
class Decision:
    passed: bool
    reason: str  #: one line
    champion: Champion | None = None
    #: benchmark -> challenger minus champion (empty without a champion)
    differences: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gate_from_params(params: dict[str, Any]) -> Gate:
    """The gate the pipeline's ``threshold``, ``tolerance`` and ``margin`` make (each
    defaulted as the pipeline does)."""
    values = {}
    for name in ("threshold", "tolerance", "margin"):
        if name in params:
            value = params[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise GateError(f"{name}: {value!r} is not a number")
            values[name] = float(value)
    return Gate(**values)


def decide(
    pass_at_1: dict[str, float], mean: float, gate: Gate, champion: Champion | None = None
) -> Decision:
    """Judge the challenger (``pass_at_1`` per benchmark, ``mean``) against ``champion``."""
    if mean < gate.threshold:
        return Decision(False, f"mean Pass@1 {mean:.4f} is below the floor {gate.threshold}")
    if champion is None:
        return Decision(
            True,
            f"no production version yet; mean Pass@1 {mean:.4f} reaches the floor {gate.threshold}",
        )
    tag = f"production (version {champion.version})"
    missing = sorted(set(champion.pass_at_1) - set(pass_at_1))
    if missing:
        raise ValueError(f"the challenger was not scored on {', '.join(missing)}")
    differences = {b: pass_at_1[b] - champion.pass_at_1[b] for b in champion.pass_at_1}
    worst = min(differences, key=differences.__getitem__) if differences else None
    if worst is not None and differences[worst] < -gate.tolerance:
        return Decision(
            False,
            f"{worst}: Pass@1 {pass_at_1[worst]:.4f} is {-differences[worst]:.4f} below "
            f"{tag}'s {champion.pass_at_1[worst]:.4f} (tolerance {gate.tolerance})",
            champion,
            differences,
        )
    if mean < champion.mean + gate.margin:
        return Decision(
            False,
            f"mean Pass@1 {mean:.4f} does not beat {tag}'s {champion.mean:.4f} by the margin "
            f"{gate.margin}",
            champion,
            differences,
        )
    return Decision(
        True,
        f"beats {tag}: mean Pass@1 {mean:.4f} against {champion.mean:.4f} (margin "
        f"{gate.margin}), no benchmark more than {gate.tolerance} below it",
        champion,
        differences,
    )


def markdown(pass_at_1: dict[str, float], mean: float, decision: Decision) -> list[str]:
    """The comparison table: each benchmark, both models, the difference."""
    c = decision.champion
    if c is None:
        return []
    lines = [
        f"| benchmark | new model | production (version {c.version}) | difference |",
        "|---|---|---|---|",
    ]
    for b, d in decision.differences.items():
        lines.append(f"| {b} | {pass_at_1[b]:.4f} | {c.pass_at_1[b]:.4f} | {d:+.4f} |")
    lines.append(f"| **average** | **{mean:.4f}** | {c.mean:.4f} | {mean - c.mean:+.4f} |")
    return lines

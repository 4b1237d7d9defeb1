"""``gmpo compare``: GMPO against GRPO (and GSPO) on the same data and budget, over seeds.

GMPO's claim (arXiv 2507.20673) is stability: a narrower range of token importance
ratios and steadier entropy than GRPO, and from that a better Pass@1. The claim lives
off-policy, where ratios move away from 1, so the study runs two regimes:

- ``on-policy``: one optimiser pass per rollout batch (``algorithm.ppo_epochs=1``);
- ``off-policy``: ``K`` passes per rollout batch (``algorithm.ppo_epochs=K``).

Every (regime, loss, seed) run trains with :func:`gmpo_kfp.engines.training.train` on the
preset's engine; the report reads only the metrics files (verl's file-logger shape,
which both engines write), so runs of either engine compare alike. The supervised
warm-up, when the preset has one, runs once per seed; every loss of that seed starts
from the same warmed-up weights. A finished run leaves ``result.json``; a second
``gmpo compare`` into the same folder reuses it, so a long study survives a restart.

Output: ``runs/<regime>/<loss>-s<seed>/``, ``summary.json``, ``report.md`` and
``plots/<regime>_<metric>.png`` (one line per loss: the mean over seeds, with a band
from the lowest to the highest seed).
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gmpo_kfp import metrics as M
from gmpo_kfp.config import ConfigError, TrainConfig, with_values
from gmpo_kfp.names import LOSS_NAMES
from gmpo_kfp.storage import write_atomic

KNOWN_LOSSES = LOSS_NAMES
ON_POLICY, OFF_POLICY = "on-policy", "off-policy"

#: plot file stem -> (title, metric names: one panel, a line per loss and name)
PLOTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "reward": ("training reward", (M.SCORE_MEAN,)),
    "token_ratio_max": ("token ratio, max per step", (M.TOKEN_RATIO_MAX,)),
    "token_ratio_min": ("token ratio, min per step", (M.TOKEN_RATIO_MIN,)),
    "clipfrac": ("clip fraction", (M.PG_CLIPFRAC,)),
    "entropy": ("entropy", (M.ENTROPY,)),
    "ppo_kl": ("KL(old || new)", (M.PPO_KL,)),
    "step_time": ("step time (s)", (M.TIME_PER_STEP,)),
}


@dataclass(frozen=True)
class RunStats:
    """What the report needs from one run's metrics file."""

    regime: str
    loss: str
    seed: int
    pass_at_1_before: float | None
    pass_at_1_after: float | None
    ratio_min: float | None  # lowest token ratio seen in training
    ratio_p5: float | None  # 5th percentile of the per-step minimum
    ratio_p95: float | None  # 95th percentile of the per-step maximum
    ratio_max: float | None  # highest token ratio seen in training
    clipfrac_mean: float | None
    entropy_mean: float | None
    entropy_std: float | None  # spread of the per-step entropy: lower is steadier
    ppo_kl_mean: float | None
    step_time_mean: float | None
    steps: int

    @property
    def log_ratio_spread(self) -> float | None:
        """``ln(p95 of max) - ln(p5 of min)``: the width of the typical ratio range."""
        if not self.ratio_p5 or not self.ratio_p95:
            return None
        return math.log(self.ratio_p95) - math.log(self.ratio_p5)


@dataclass
class CompareResult:
    output_dir: Path
    runs: list[RunStats] = field(default_factory=list)
    report: Path | None = None
    plots: list[Path] = field(default_factory=list)
    verdict: list[str] = field(default_factory=list)


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _column(records: Sequence[dict], name: str) -> list[float]:
    return M.series(records, name)[1]


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def run_stats(metrics_file: str | Path, *, regime: str, loss: str, seed: int) -> RunStats:
    """Summarise one run's metrics file (either engine's)."""
    records = list(M.read_metrics(metrics_file))
    lows, highs = _column(records, M.TOKEN_RATIO_MIN), _column(records, M.TOKEN_RATIO_MAX)
    entropy = _column(records, M.ENTROPY)
    before, after = M.validation_before_after(metrics_file)
    return RunStats(
        regime=regime,
        loss=loss,
        seed=seed,
        pass_at_1_before=before,
        pass_at_1_after=after,
        ratio_min=min(lows) if lows else None,
        ratio_p5=_percentile(lows, 0.05),
        ratio_p95=_percentile(highs, 0.95),
        ratio_max=max(highs) if highs else None,
        clipfrac_mean=_mean(_column(records, M.PG_CLIPFRAC)),
        entropy_mean=_mean(entropy),
        entropy_std=statistics.pstdev(entropy) if len(entropy) > 1 else None,
        ppo_kl_mean=_mean(_column(records, M.PPO_KL)),
        step_time_mean=_mean(_column(records, M.TIME_PER_STEP)),
        steps=max((r["step"] for r in records if M.SCORE_MEAN in r["data"]), default=0),
    )


def parse_losses(text: str) -> list[str]:
    losses = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in losses if s not in KNOWN_LOSSES]
    if bad or len(losses) < 2 or len(set(losses)) != len(losses):
        raise ConfigError(
            f"--losses: {text!r}; give two or more distinct of {', '.join(KNOWN_LOSSES)}, "
            "comma-separated (e.g. gmpo,grpo)"
        )
    return losses


def regimes(iterations: int) -> dict[str, int]:
    """Regime name -> optimiser passes per rollout batch."""
    if iterations < 1:
        raise ConfigError(f"--iterations: {iterations}; give 1 (on-policy only) or more")
    return {ON_POLICY: 1} | ({OFF_POLICY: iterations} if iterations > 1 else {})


def _run_config(
    base: TrainConfig, out: Path, *, loss: str, seed: int, passes: int, warm: Path | None
) -> TrainConfig:
    values: dict[str, object] = {
        "algorithm.loss": loss,
        "algorithm.ppo_epochs": passes,
        "trainer.seed": seed,
        "trainer.output_dir": str(out),
        "trainer.save_freq": -1,
        "trainer.resume": "disable",
    }
    if warm is not None:
        values |= {"model.path": str(warm), "sft.enabled": False}
    return with_values(base, values)


def run_study(
    base: TrainConfig,
    *,
    losses: Sequence[str],
    seeds: Sequence[int],
    iterations: int,
    output_dir: str | Path,
    progress: bool = False,
) -> list[RunStats]:
    """Train every (regime, loss, seed) not yet done in ``output_dir``; their stats."""
    from gmpo_kfp.engines.training import train

    out = Path(output_dir)
    plan = regimes(iterations)
    total = len(plan) * len(losses) * len(seeds)
    stats, done = [], 0
    warm: dict[int, Path] = {}
    for regime, passes in plan.items():
        for seed in seeds:
            for loss in losses:
                run_dir = out / "runs" / regime / f"{loss}-s{seed}"
                marker = run_dir / "result.json"
                done += 1
                if not marker.exists():
                    print(
                        f"gmpo compare: [{done}/{total}] {regime} {loss} seed {seed}",
                        file=sys.stderr,
                        flush=True,
                    )
                    cfg = _run_config(
                        base, run_dir, loss=loss, seed=seed, passes=passes, warm=warm.get(seed)
                    )
                    result = train(cfg, progress=progress)
                    write_atomic(
                        marker,
                        json.dumps(
                            {"steps": result.steps, "seconds": result.seconds}, sort_keys=True
                        ),
                    )
                if base.sft.enabled and seed not in warm and (run_dir / "sft-model").is_dir():
                    warm[seed] = run_dir / "sft-model"
                stats.append(
                    run_stats(run_dir / "metrics.jsonl", regime=regime, loss=loss, seed=seed)
                )
    return stats


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _agg(values: Sequence[float | None], spec: str = ".3f") -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return format(vals[0], spec)
    return f"{format(statistics.fmean(vals), spec)} ± {format(statistics.pstdev(vals), spec)}"


def _values(runs: Sequence[RunStats], attr: str) -> list[float]:
    """``attr`` (a field or a property such as ``log_ratio_spread``) of each run that has it."""
    return [v for r in runs if (v := getattr(r, attr)) is not None]


def _mean_of(runs: Sequence[RunStats], attr: str) -> float | None:
    vals = _values(runs, attr)
    return statistics.fmean(vals) if vals else None


def _std_of(runs: Sequence[RunStats], attr: str) -> float:
    vals = _values(runs, attr)
    return statistics.pstdev(vals) if len(vals) > 1 else 0.0


def verdict(runs: Sequence[RunStats], *, against: str = "grpo") -> list[str]:
    """Plain sentences: did GMPO's narrower ratio range and steadier entropy reproduce?"""
    lines = []
    for regime in dict.fromkeys(r.regime for r in runs):
        gmpo = [r for r in runs if r.regime == regime and r.loss == "gmpo"]
        other = [r for r in runs if r.regime == regime and r.loss == against]
        if not gmpo or not other:
            continue
        seeds = len(gmpo)
        checks = [
            ("a narrower token-ratio range", "log_ratio_spread", "ln(p95 max / p5 min)", False),
            ("steadier entropy", "entropy_std", "std of per-step entropy", False),
            ("a higher held-out Pass@1", "pass_at_1_after", "Pass@1 after", True),
        ]
        for claim, attr, what, higher in checks:
            g, o = _mean_of(gmpo, attr), _mean_of(other, attr)
            if g is None or o is None:
                lines.append(f"{regime}: {claim}: not measured (the metrics files lack {what}).")
                continue
            spread = max(_std_of(gmpo, attr), _std_of(other, attr))
            caveat = ", within the spread over seeds" if 0 < abs(g - o) <= spread else ""
            numbers = f"{g:.3f} vs {o:.3f}, mean of {seeds} seed{'s' if seeds != 1 else ''}"
            if abs(g - o) <= 1e-9 + 1e-3 * max(abs(g), abs(o)):
                lines.append(f"{regime}: GMPO and {against.upper()} tied on {what} ({numbers}).")
                continue
            held = g > o if higher else g < o
            lines.append(
                f"{regime}: GMPO {'showed' if held else 'did not show'} {claim} than "
                f"{against.upper()} ({what}: {numbers}{caveat})."
            )
    return lines


def _aligned(files: Sequence[Path], name: str) -> tuple[list[int], list[list[float]]]:
    """Steps present in every file, and each file's values at them."""
    from gmpo_kfp.study.report import series

    per = [dict(zip(*series(f, name), strict=True)) for f in files]
    steps = sorted(set.intersection(*(set(p) for p in per))) if per else []
    return steps, [[p[s] for s in steps] for p in per]


def _draw(ax: Any, out: Path, runs: Sequence[RunStats], regime: str, stem: str) -> None:
    """One panel: per loss, the mean over seeds and a band from the lowest to the highest."""
    title, names = PLOTS[stem]
    for loss in dict.fromkeys(r.loss for r in runs):
        files = [
            out / "runs" / regime / f"{loss}-s{r.seed}" / "metrics.jsonl"
            for r in runs
            if r.regime == regime and r.loss == loss
        ]
        for name in names:
            steps, values = _aligned(files, name)
            if not steps:
                continue
            cols = list(zip(*values, strict=True))
            (line,) = ax.plot(
                steps, [statistics.fmean(c) for c in cols], label=loss.upper(), linewidth=1.2
            )
            if len(files) > 1:
                ax.fill_between(
                    steps,
                    [min(c) for c in cols],
                    [max(c) for c in cols],
                    color=line.get_color(),
                    alpha=0.2,
                    linewidth=0,
                )
    ax.set_title(f"{title} ({regime})", fontsize=9)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if stem.startswith("token_ratio"):
        ax.set_yscale("log")
    if ax.lines:
        ax.legend(fontsize=7)


#: the panels of each regime's overview figure
OVERVIEW = ("reward", "token_ratio_max", "token_ratio_min", "entropy", "clipfrac")


def plot_study(output_dir: str | Path, runs: Sequence[RunStats]) -> list[Path]:
    """Per regime: ``<regime>_overview.png`` (the main panels side by side) and one PNG
    per entry of :data:`PLOTS`; a line per loss (mean over seeds) with a min-max band."""
    from gmpo_kfp.study.report import png, pyplot

    plt = pyplot()
    out = Path(output_dir)
    written = []

    def save(fig: Any, name: str) -> None:
        written.append(write_atomic(out / "plots" / name, png(fig, dpi=80)))

    for regime in dict.fromkeys(r.regime for r in runs):
        fig, axes = plt.subplots(1, len(OVERVIEW), figsize=(3.6 * len(OVERVIEW), 3.0))
        for ax, stem in zip(axes, OVERVIEW, strict=True):
            _draw(ax, out, runs, regime, stem)
        save(fig, f"{regime}_overview.png")
        for stem in PLOTS:
            fig, ax = plt.subplots(figsize=(5.0, 3.2))
            _draw(ax, out, runs, regime, stem)
            save(fig, f"{regime}_{stem}.png")
    return written


def report_markdown(
    runs: Sequence[RunStats], verdict_lines: Sequence[str], plots: Sequence[Path], root: Path
) -> str:
    """The study as Markdown: one table row per (regime, loss), mean ± spread over seeds."""
    seeds = sorted({r.seed for r in runs})
    lines = [
        "# GMPO vs GRPO: study report",
        "",
        f"Seeds {', '.join(map(str, seeds))}; mean ± standard deviation over seeds. Ratio "
        "columns are token importance ratios over training: the lowest seen, the 5th "
        "percentile of each step's minimum, the 95th percentile of each step's maximum, "
        "and the highest seen.",
        "",
        "| regime | loss | Pass@1 before | Pass@1 after | ratio min | ratio p5 | ratio p95 "
        "| ratio max | clip frac | entropy | entropy std | KL | step time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for regime in dict.fromkeys(r.regime for r in runs):
        for loss in dict.fromkeys(r.loss for r in runs):
            group = [r for r in runs if r.regime == regime and r.loss == loss]
            if not group:
                continue

            def col(attr: str, spec: str = ".3f", group=group) -> str:
                return _agg([getattr(r, attr) for r in group], spec)

            lines.append(
                f"| {regime} | {loss.upper()} | {col('pass_at_1_before')} "
                f"| {col('pass_at_1_after')} | {col('ratio_min', '.3g')} "
                f"| {col('ratio_p5', '.3g')} | {col('ratio_p95', '.3g')} "
                f"| {col('ratio_max', '.3g')} | {col('clipfrac_mean', '.4f')} "
                f"| {col('entropy_mean')} | {col('entropy_std', '.4f')} "
                f"| {col('ppo_kl_mean', '.2e')} | {col('step_time_mean', '.3f')} |"
            )
    lines += ["", "## Verdict", ""]
    lines += [f"- {v}" for v in verdict_lines] or ["- Nothing to compare: GMPO or GRPO missing."]
    lines += [
        "",
        "## Per run",
        "",
        "| regime | loss | seed | steps | Pass@1 after |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.regime} | {r.loss} | {r.seed} | {r.steps} | {_fmt(r.pass_at_1_after)} |"
        for r in runs
    ]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}]({p.relative_to(root).as_posix()})" for p in plots]
    return "\n".join(lines) + "\n"


def compare(
    base: TrainConfig,
    *,
    losses: Sequence[str],
    seeds: int,
    iterations: int,
    output_dir: str | Path,
    progress: bool = False,
) -> CompareResult:
    """Run the study (reusing finished runs) and write ``summary.json``, plots and report."""
    if seeds < 1:
        raise ConfigError(f"--seeds: {seeds}; give the number of seeds, 1 or more")
    regimes(iterations)  # refuse a bad --iterations before anything runs
    out = Path(output_dir)
    seed_list = [base.trainer.seed + i for i in range(seeds)]
    runs = run_study(
        base,
        losses=losses,
        seeds=seed_list,
        iterations=iterations,
        output_dir=out,
        progress=progress,
    )
    lines = verdict(runs)
    plots = plot_study(out, runs)
    summary = {
        "preset": base.name,
        "engine": base.engine,
        "losses": list(losses),
        "seeds": seed_list,
        "iterations": iterations,
        "runs": [dataclasses.asdict(r) | {"log_ratio_spread": r.log_ratio_spread} for r in runs],
        "verdict": lines,
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    report = write_atomic(out / "report.md", report_markdown(runs, lines, plots, out))
    return CompareResult(output_dir=out, runs=runs, report=report, plots=plots, verdict=lines)

"""Metric names (the only list) and the metrics file both engines write.

The file is verl's ``file`` logger format: one JSON object per line,
``{"step": N, "data": {name: value, ...}}``, with verl's metric names. verl writes
it itself (``$VERL_FILE_LOGGER_PATH``); the TRL engine writes the same shape
through :class:`MetricsWriter`, so plots, reports and exporters read both alike.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

# verl's names
SCORE_MEAN = "critic/score/mean"
REWARD_MEAN = "critic/rewards/mean"
PG_LOSS = "actor/pg_loss"
PG_CLIPFRAC = "actor/pg_clipfrac"
PG_CLIPFRAC_LOWER = "actor/pg_clipfrac_lower"
PPO_KL = "actor/ppo_kl"
ENTROPY = "actor/entropy"
KL_LOSS = "actor/kl_loss"
GRAD_NORM = "actor/grad_norm"
LR = "actor/lr"
RESPONSE_LENGTH_MEAN = "response_length/mean"
RESPONSE_LENGTH_MAX = "response_length/max"
RESPONSE_CLIP_RATIO = "response_length/clip_ratio"
TIME_PER_STEP = "perf/time_per_step"
#: seconds spent generating rollouts and validating, per step (verl's ``timing_s/`` names)
TIMING_GEN = "timing_s/gen"
TIMING_TESTING = "timing_s/testing"
THROUGHPUT = "perf/throughput"
#: the peak memory each actor process allocated on its accelerator, in GiB (verl's
#: workers log it every update, averaged over ranks; the TRL engine logs its own)
GPU_MEMORY_GB = "actor/perf/max_memory_allocated_gb"
# ours, in verl's style: the range of importance ratios (the paper's stability signal)
TOKEN_RATIO_MIN = "actor/token_ratio_min"
TOKEN_RATIO_MAX = "actor/token_ratio_max"
SEQ_RATIO_MIN = "actor/seq_ratio_min"
SEQ_RATIO_MAX = "actor/seq_ratio_max"
#: within a step, ranges combine by min / max over micro-batches, times add up,
#: everything else by mean
REDUCTIONS = {
    TOKEN_RATIO_MIN: min,
    SEQ_RATIO_MIN: min,
    TOKEN_RATIO_MAX: max,
    SEQ_RATIO_MAX: max,
    TIMING_GEN: sum,
}
TRAINING_METRICS = (
    SCORE_MEAN,
    REWARD_MEAN,
    PG_LOSS,
    PG_CLIPFRAC,
    PG_CLIPFRAC_LOWER,
    PPO_KL,
    ENTROPY,
    KL_LOSS,
    GRAD_NORM,
    LR,
    RESPONSE_LENGTH_MEAN,
    RESPONSE_LENGTH_MAX,
    RESPONSE_CLIP_RATIO,
    TIME_PER_STEP,
    TIMING_GEN,
    TIMING_TESTING,
    THROUGHPUT,
    TOKEN_RATIO_MIN,
    TOKEN_RATIO_MAX,
    SEQ_RATIO_MIN,
    SEQ_RATIO_MAX,
)
PASS_AT_1 = "pass@1"
#: the evaluate step's KFP metrics (and the registry manifest's): one per benchmark, and
#: their mean, which the gate and ``gmpo registry list`` read
EVAL_PREFIX = "pass_at_1/"
EVAL_MEAN = f"{EVAL_PREFIX}average"


def eval_metric(benchmark: str) -> str:
    """The evaluate step's metric name for ``benchmark``'s Pass@1."""
    return f"{EVAL_PREFIX}{benchmark}"


#: Prometheus export (gmpo_kfp.cluster.prometheus): verl name -> (gauge name, help). Every
#: series name the dashboard and the alert rules use is here or in PROMETHEUS_OWN.
PROMETHEUS_GAUGES = {
    SCORE_MEAN: ("gmpo_reward_mean", "mean reward of the step's rollouts"),
    PG_LOSS: ("gmpo_pg_loss", "policy-gradient loss"),
    PG_CLIPFRAC: ("gmpo_clipfrac", "fraction of tokens clipped (upper bound)"),
    PG_CLIPFRAC_LOWER: ("gmpo_clipfrac_lower", "fraction of tokens clipped (lower bound)"),
    PPO_KL: ("gmpo_ppo_kl", "KL between the sampling and the updated policy"),
    ENTROPY: (
        "gmpo_entropy",
        "mean token entropy of the policy (trl: over the rows the update learns from)",
    ),
    TOKEN_RATIO_MIN: ("gmpo_token_ratio_min", "lowest token importance ratio of the step"),
    TOKEN_RATIO_MAX: ("gmpo_token_ratio_max", "highest token importance ratio of the step"),
    SEQ_RATIO_MIN: ("gmpo_seq_ratio_min", "lowest sequence importance ratio of the step"),
    SEQ_RATIO_MAX: ("gmpo_seq_ratio_max", "highest sequence importance ratio of the step"),
    RESPONSE_LENGTH_MEAN: ("gmpo_response_length_mean", "mean response length (tokens)"),
    THROUGHPUT: ("gmpo_throughput_tokens_per_second", "tokens per second"),
    TIME_PER_STEP: ("gmpo_step_seconds", "wall time of the step"),
}
PROM_STEP = "gmpo_step"
PROM_LAST_STEP_TIME = "gmpo_last_step_timestamp_seconds"
PROM_NONFINITE = "gmpo_nonfinite_loss_total"
PROM_GPU_MEMORY = "gmpo_gpu_memory_bytes"
PROM_PASS_AT_1 = "gmpo_pass_at_1"
PROM_REGISTERED_VERSION = "gmpo_registered_version"
PROM_RUN_INFO = "gmpo_run"  # an Info metric: exported as gmpo_run_info
PROM_ACTIVE = "gmpo_training_active"  # 1 while a run trains, 0 once it ended cleanly
PROMETHEUS_OWN = (
    PROM_STEP,
    PROM_ACTIVE,
    PROM_LAST_STEP_TIME,
    PROM_NONFINITE,
    PROM_GPU_MEMORY,
    PROM_PASS_AT_1,
    PROM_REGISTERED_VERSION,
    f"{PROM_RUN_INFO}_info",
)


def prometheus_names() -> set[str]:
    """Every series name the code exports (counters as ``*_total``)."""
    return {name for name, _ in PROMETHEUS_GAUGES.values()} | set(PROMETHEUS_OWN)


def val_metric(data_source: str, n: int = 1) -> str:
    """verl's validation accuracy name: ``val-core/<source>/acc/mean@<n>``."""
    return f"val-core/{data_source}/acc/mean@{n}"


#: TRL's GRPOTrainer log keys -> verl's names
TRL_TO_VERL = {
    "reward": SCORE_MEAN,
    "loss": PG_LOSS,
    "grad_norm": GRAD_NORM,
    "learning_rate": LR,
    "entropy": ENTROPY,
    "kl": KL_LOSS,
    "completions/mean_length": RESPONSE_LENGTH_MEAN,
    "completions/max_length": RESPONSE_LENGTH_MAX,
    "completions/clipped_ratio": RESPONSE_CLIP_RATIO,
    "step_time": TIME_PER_STEP,
}


def _clean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    return value


class MetricsWriter:
    """Appends ``{"step", "data"}`` records to a JSONL file, one flushed line each."""

    def __init__(self, path: str | os.PathLike, *, append: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a" if append else "w", encoding="utf-8")

    def write(self, step: int, data: Mapping[str, Any]) -> None:
        record = {"step": int(step), "data": {k: _clean(v) for k, v in data.items()}}
        self._fh.write(json.dumps(record, sort_keys=True) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_record(line: str | bytes) -> dict[str, Any] | None:
    """One line of a metrics file as a ``{"step", ...}`` record; None for a torn line (a
    killed writer, or one still being written) or anything else."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "step" in record else None


def read_metrics(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The records of a metrics file; a torn last line (a killed writer) is skipped."""
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            record = parse_record(line)
            if record is not None and "data" in record:
                yield record


def number(value: Any) -> float | None:
    """A record's value as a float where it is a number (a bool or a text is not)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def series(records: Iterable[Mapping[str, Any]], name: str) -> tuple[list[int], list[float]]:
    """The steps where ``name`` has a number, and those numbers, from metrics records."""
    steps, values = [], []
    for record in records:
        value = number(record["data"].get(name))
        if value is not None:
            steps.append(record["step"])
            values.append(value)
    return steps, values


def val_mean(data: Mapping[str, Any]) -> float | None:
    """A record's validation accuracy: the unweighted mean of its ``val-core/`` metrics."""
    values = [v for k, v in data.items() if k.startswith("val-core/") and number(v) is not None]
    return sum(values) / len(values) if values else None


def validation_before_after(path: str | os.PathLike) -> tuple[float | None, float | None]:
    """Validation accuracy at step 0 and at the last later step (None where absent).

    The accuracy of a record is the unweighted mean of its ``val-core/`` metrics, which
    both engines write (verl itself, the TRL engine in verl's names).
    """
    if not Path(path).exists():
        return None, None
    val = []
    for record in read_metrics(path):
        accuracy = val_mean(record["data"])
        if accuracy is not None:
            val.append((record["step"], accuracy))
    before = val[0][1] if val and val[0][0] == 0 else None
    after = val[-1][1] if val and val[-1][0] > 0 else None
    return before, after


def time_totals(path: str | os.PathLike) -> dict[str, float]:
    """Seconds summed over a metrics file's records: generation (:data:`TIMING_GEN`) and
    validation (:data:`TIMING_TESTING`); 0 where absent."""
    totals = dict.fromkeys((TIMING_GEN, TIMING_TESTING), 0.0)
    if Path(path).exists():
        for record in read_metrics(path):
            for name in totals:
                value = number(record["data"].get(name))
                if value is not None:
                    totals[name] += value
    return totals


def truncate_after(path: str | os.PathLike, step: int) -> None:
    """Drop records after ``step`` (a resumed run rewrites them), atomically."""
    p = Path(path)
    if not p.exists():
        return
    from gmpo_kfp.storage import write_atomic

    kept = [r for r in read_metrics(p) if r["step"] <= step]
    write_atomic(p, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))

"""``gmpo_kfp.train(config)``: one entry point for both engines.

The data path is the same for both: verl RL parquet files. With ``data.task`` set
(the built-in ``arithmetic``), the task is generated into ``output_dir/data`` first
and empty file lists point there (train: the RL split, val: the held-out split,
sft: the warm-up split); the split is fixed (seed 0), so runs with different
training seeds see the same held-out problems.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gmpo_kfp.config import ConfigError, TrainConfig
from gmpo_kfp.data.schema import DataError, read_rl_parquet, write_rl_parquet

#: The built-in task's split never depends on the training seed.
TASK_SPLIT_SEED = 0


@dataclass
class TrainResult:
    """What a run leaves behind."""

    model_dir: Path  # final weights, Hugging Face format
    metrics_file: Path  # verl file-logger JSONL
    steps: int  # rollout steps done (in all, across resumes)
    seconds: float  # wall time of this invocation's RL part
    resumed_from: str | None
    sft: dict[str, Any] | None  # warm-up steps, seconds, Pass@1 (when it ran now)
    pass_at_1_before: float | None  # validation Pass@1 at step 0
    pass_at_1_after: float | None  # validation Pass@1 at the last step

    def summary(self) -> str:
        lines = [f"model       {self.model_dir}", f"metrics     {self.metrics_file}"]
        lines.append(f"steps       {self.steps} ({self.seconds:.1f} s)")
        if self.resumed_from:
            lines.append(f"resumed     {self.resumed_from}")
        if self.sft:
            lines.append(
                f"warm-up     {self.sft['steps']} steps ({self.sft['seconds']:.1f} s), "
                f"Pass@1 {self.sft['pass_at_1']}"
            )
        if self.pass_at_1_after is not None:
            before = "-" if self.pass_at_1_before is None else f"{self.pass_at_1_before:.3f}"
            lines.append(f"pass@1      {before} -> {self.pass_at_1_after:.3f}")
        return "\n".join(lines)


def materialise_task(config: TrainConfig) -> TrainConfig:
    """Generate ``data.task`` into ``output_dir/data`` and fill the empty file lists."""
    d = config.data
    if not d.task:
        return config
    from gmpo_kfp.data.arithmetic import arithmetic_rows

    folder = Path(config.trainer.output_dir) / "data"
    files = {}
    for split in ("warmup", "train", "test"):
        path = folder / f"{d.task}-{split}.parquet"
        if not path.exists():
            write_rl_parquet(arithmetic_rows(split, seed=TASK_SPLIT_SEED), path)
        files[split] = [str(path)]
    data = dataclasses.replace(
        d,
        train_files=d.train_files or files["train"],
        val_files=d.val_files or files["test"],
        sft_files=d.sft_files or files["warmup"],
    )
    return dataclasses.replace(config, data=data)


def _rows(files: list[str], field: str) -> list[dict]:
    rows: list[dict] = []
    for path in files:
        if not Path(path).exists():
            raise DataError(f"{field}: {path} does not exist; give a verl RL parquet file")
        try:
            rows.extend(read_rl_parquet(path))
        except DataError as exc:
            raise DataError(f"{field}: {exc}") from None
    return rows


def train(
    config: TrainConfig,
    *,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
    trl_overrides: dict[str, Any] | None = None,
) -> TrainResult:
    """Train as ``config`` says, on its engine; returns the final model and metrics file.

    TRL engine only: ``callbacks`` are extra ``transformers.TrainerCallback`` objects;
    ``trl_overrides`` sets fields of the generated ``GMPOConfig``/``GRPOConfig`` that our
    config does not cover (e.g. ``{"generation_kwargs": {"min_new_tokens": 32}}``).
    """
    from gmpo_kfp.models import TINY, check_model_dir

    if config.model.path != TINY:
        check_model_dir(config.model.path)  # before anything is written
    config = materialise_task(config)
    if not config.data.train_files:
        raise ConfigError(
            "data.train_files: empty; give verl RL parquet files or set data.task=arithmetic"
        )
    from gmpo_kfp.prometheus import exporting

    with exporting(config, Path(config.trainer.output_dir) / "metrics.jsonl"):
        return _train(config, progress=progress, callbacks=callbacks, trl_overrides=trl_overrides)


def _train(
    config: TrainConfig,
    *,
    progress: bool,
    callbacks: Sequence[Any],
    trl_overrides: dict[str, Any] | None,
) -> TrainResult:
    if config.engine == "verl":
        from gmpo_kfp.engines import verl as verl_engine

        print(f"gmpo: verl engine, {config.algorithm.loss} loss", file=sys.stderr)
        return TrainResult(**verl_engine.run(config))
    from gmpo_kfp.engines import trl as engine

    train_rows = _rows(config.data.train_files, "data.train_files")
    if not train_rows:
        raise DataError("data.train_files: the files hold no rows; give a non-empty parquet file")
    val_rows = _rows(config.data.val_files, "data.val_files")
    sft_rows = _rows(config.data.sft_files, "data.sft_files") if config.sft.enabled else []
    if config.sft.enabled and not sft_rows:
        raise ConfigError("sft.enabled: data.sft_files is empty; give warm-up data or disable it")
    print(
        f"gmpo: {config.engine} engine, {config.algorithm.loss} loss, "
        f"{len(train_rows)} training prompts, output {config.trainer.output_dir}",
        file=sys.stderr,
    )
    return TrainResult(
        **engine.run(
            config,
            train_rows,
            val_rows,
            sft_rows,
            progress=progress,
            callbacks=callbacks,
            trl_overrides=trl_overrides,
        )
    )


def result_to_dict(result: TrainResult) -> dict[str, Any]:
    data = dataclasses.asdict(result)
    data["model_dir"], data["metrics_file"] = str(result.model_dir), str(result.metrics_file)
    return data

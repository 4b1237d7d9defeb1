"""``gmpo_kfp.train(config)``: one entry point for both engines.

The data path is the same for both: verl RL parquet files. With ``data.task`` set
(the built-in ``arithmetic``), the task is generated into ``output_dir/data`` first
and empty file lists point there (train: the RL split, val: the held-out split,
sft: the warm-up split); the split is fixed (seed 0), so runs with different
training seeds see the same held-out problems.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gmpo_kfp import metrics as M
from gmpo_kfp.config import ConfigError, TrainConfig, with_values
from gmpo_kfp.data.schema import read_rl_files, write_rl_parquet
from gmpo_kfp.engines.base import Engine, get_engine, latest
from gmpo_kfp.engines.mirror import CheckpointMirror
from gmpo_kfp.heap import reuse_freed_memory

#: The built-in task's split never depends on the training seed.
TASK_SPLIT_SEED = 0


#: Where a run's seconds went (:attr:`TrainResult.times`), in the order they are shown.
TIME_PARTS = ("model_build", "warmup", "rl", "generation", "validation", "update")


@dataclass
class TrainResult:
    """What a run leaves behind."""

    model_dir: Path  # final weights, Hugging Face format
    metrics_file: Path  # verl file-logger JSONL
    steps: int  # rollout steps done (in all, across resumes)
    seconds: float  # wall time of this invocation's RL part
    resumed_from: str | None  # the local checkpoint this run resumed from
    restored_step: int | None  # the step of the checkpoint restored from output_uri
    sft: dict[str, Any] | None  # warm-up steps, seconds, Pass@1 (when it ran now)
    base_model: str  # the weights RL started from: the warm-up model, else model.path's
    pass_at_1_before: float | None  # validation Pass@1 at step 0
    pass_at_1_after: float | None  # validation Pass@1 at the last step
    #: seconds by :data:`TIME_PARTS`: building the base model, the warm-up (when it ran
    #: now), RL, and RL's generation, validation and the rest (forward, backward, optimiser,
    #: checkpoints)
    times: dict[str, float] = dataclasses.field(default_factory=dict)

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


def check_inputs(config: TrainConfig) -> None:
    """Every data file the run reads exists and holds valid rows (before anything is written)."""
    d = config.data
    read_rl_files(d.train_files, "data.train_files")
    read_rl_files(d.val_files, "data.val_files")
    if config.sft.enabled and not read_rl_files(d.sft_files, "data.sft_files"):
        raise ConfigError("sft.enabled: data.sft_files is empty; give warm-up data or disable it")


def _warm_start(
    config: TrainConfig,
    base: str,
    sft_dir: Path,
    mirror: CheckpointMirror | None,
    resume: Any,
    progress: bool,
) -> tuple[str, dict[str, Any] | None]:
    """The warm-up model RL starts from: kept from an earlier attempt (``trainer.resume=
    auto``: in ``sft_dir``, else restored from the mirror), else trained now and mirrored.

    A resumed checkpoint was trained from the warm-up model (its reference model, its
    tokenizer): resuming without it would quietly change the run, so that fails.
    """
    from gmpo_kfp.evaluation.models import has_weights

    auto = config.trainer.resume == "auto"
    if auto and mirror is not None:
        if not has_weights(sft_dir):
            mirror.restore_warmup(sft_dir)
        elif not mirror.has_warmup():  # kept here, not mirrored yet
            mirror.save_warmup(sft_dir, None)
    if auto and has_weights(sft_dir):
        return str(sft_dir), None
    if resume is not None:
        where = f" nor mirrored under {mirror.output_uri}" if mirror else ""
        raise ConfigError(
            f"trainer.resume=auto: checkpoint step {resume.step} was trained after the warm-up, "
            f"whose model is neither in {sft_dir}{where}; set trainer.resume=disable to start over"
        )
    from gmpo_kfp.engines.trl import warm_up

    info = warm_up(config, base, sft_dir, progress=progress)
    if mirror is not None:
        mirror.save_warmup(sft_dir, info)
    return str(sft_dir), info


def train(
    config: TrainConfig,
    *,
    engine: Engine | None = None,
    progress: bool = True,
    output_uri: str = "",
) -> TrainResult:
    """Train as ``config`` says; returns the final model, the metrics file and the figures.

    ``engine``: an :class:`~gmpo_kfp.engines.base.Engine` (default: the one
    ``config.engine`` names, with its default options; e.g. ``TRLEngine(callbacks=...)``
    for TRL callbacks). ``output_uri``: mirror every checkpoint there while training
    (``s3://`` or a path) and, with ``trainer.resume=auto``, restore the latest one
    first, so a retried run in an empty folder resumes where the last one stopped.
    """
    import torch

    from gmpo_kfp.evaluation.models import TINY, check_model_dir, resolve_model_path

    if not torch.cuda.is_available():
        reuse_freed_memory()  # a CPU step reuses the last step's memory
    engine = engine or get_engine(config.engine)
    engine.check(config, cuda=torch.cuda.is_available())  # what it cannot run, before any work
    if config.model.path != TINY:
        check_model_dir(config.model.path)  # before anything is written
    config = materialise_task(config)
    if not config.data.train_files:
        raise ConfigError(
            "data.train_files: empty; give verl RL parquet files or set data.task=arithmetic"
        )
    check_inputs(config)
    out = Path(config.trainer.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_file = out / "metrics.jsonl"
    layout = engine.checkpoints(config)
    auto = config.trainer.resume == "auto"
    if not auto:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    mirror = None
    if output_uri:
        mirror = CheckpointMirror(
            output_uri,
            out,
            layout,
            keep=config.trainer.max_ckpt_to_keep,
            queue_size=config.storage.mirror_queue,
            transfer=config.storage.transfer(),
        )
    restored = mirror.restore() if mirror and auto else None
    resume = latest(layout, out / "checkpoints") if auto else None

    clock = time.perf_counter()
    base = resolve_model_path(config.model.path, out)
    model_build = time.perf_counter() - clock
    sft_info = None
    if config.sft.enabled:
        base, sft_info = _warm_start(config, base, out / "sft-model", mirror, resume, progress)
    # the run ends with these steps: records after the resumed checkpoint are rewritten
    M.truncate_after(metrics_file, resume.step if resume else -1)
    run_config = with_values(config, {"model.path": base, "sft.enabled": False})

    from gmpo_kfp.cluster.prometheus import exporting

    with exporting(config, metrics_file), mirror or contextlib.nullcontext():
        run = engine.run(run_config, progress=progress)
    before, after = M.validation_before_after(run.metrics_file)
    rl = M.time_totals(run.metrics_file)
    times = {
        "model_build": model_build,
        "warmup": sft_info["seconds"] if sft_info else 0.0,
        "rl": run.seconds,
        "generation": rl[M.TIMING_GEN],
        "validation": rl[M.TIMING_TESTING],
    }
    times["update"] = max(0.0, run.seconds - times["generation"] - times["validation"])
    return TrainResult(
        model_dir=run.model_dir,
        metrics_file=run.metrics_file,
        steps=run.steps,
        seconds=run.seconds,
        resumed_from=str(resume.path) if resume else None,
        restored_step=restored.step if restored else None,
        sft=sft_info,
        base_model=base,
        pass_at_1_before=before,
        pass_at_1_after=after,
        times=times,
    )


def result_to_dict(result: TrainResult) -> dict[str, Any]:
    data = dataclasses.asdict(result)
    data["model_dir"], data["metrics_file"] = str(result.model_dir), str(result.metrics_file)
    return data

"""The engine seam: what both engines (TRL on one machine, verl on Ray) implement.

:func:`gmpo_kfp.engines.training.train` owns everything the engines share: the built-in
task, the tiny model, the supervised warm-up, resuming (which checkpoint, which
metrics survive), mirroring checkpoints to ``output_uri`` and restoring them,
Prometheus export and the closing result. An engine only trains:

- :meth:`Engine.run` trains ``config`` from ``model.path`` (already a model folder)
  into ``trainer.output_dir``: checkpoints under ``checkpoints/``, one metrics
  record per step in ``metrics.jsonl`` (verl's names), the final Hugging Face model
  in ``model/``; it resumes from the latest complete checkpoint there when
  ``trainer.resume`` is ``auto``, and returns an :class:`EngineRun`;
- :meth:`Engine.checkpoints` says how its checkpoints lie on disk
  (:class:`CheckpointLayout`), which the mirror and the resume logic read;
- :meth:`Engine.check` refuses what the engine would refuse at its start (a verl
  mapping that does not exist, a TRL batch split that does not divide), so that
  ``gmpo submit`` and ``gmpo schedule`` fail in seconds rather than in the train step.

Engine-only options (TRL callbacks and ``GMPOConfig`` overrides, the verl
interpreter) are arguments of the engine's constructor, never of ``train()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from gmpo_kfp.config import ConfigError, TrainConfig


@dataclass(frozen=True)
class Checkpoint:
    """One complete checkpoint: its rollout step and its folder."""

    step: int
    path: Path

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class EngineRun:
    """What an engine's run leaves behind."""

    model_dir: Path  # final weights, Hugging Face format
    metrics_file: Path  # one {"step", "data"} record per rollout step
    steps: int  # rollout steps done, across resumes
    seconds: float  # wall time of this invocation's training


@runtime_checkable
class CheckpointLayout(Protocol):
    """How an engine's checkpoints lie under ``<output_dir>/checkpoints``."""

    def complete(self, root: Path) -> list[Checkpoint]:
        """Every checkpoint under ``root`` whose files are all written, oldest first."""
        ...

    def restored(self, root: Path, checkpoint: Checkpoint) -> None:
        """Mark ``checkpoint``, just downloaded under ``root``, as the one to resume from."""
        ...


@runtime_checkable
class Engine(Protocol):
    """A training engine (see the module docstring)."""

    name: str

    def checkpoints(self, config: TrainConfig) -> CheckpointLayout: ...

    def check(self, config: TrainConfig, *, cuda: bool) -> None:
        """Raise :class:`~gmpo_kfp.config.ConfigError` for what :meth:`run` would refuse
        (``cuda``: the run will have GPUs). Reads nothing, starts nothing."""
        ...

    def run(self, config: TrainConfig, *, progress: bool = True) -> EngineRun: ...


def latest(layout: CheckpointLayout, root: Path) -> Checkpoint | None:
    """The newest complete checkpoint under ``root``, if any."""
    done = layout.complete(root) if root.is_dir() else []
    return done[-1] if done else None


def check_config(config: TrainConfig, *, cuda: bool) -> None:
    """The engine ``config.engine`` accepts ``config`` (see :meth:`Engine.check`)."""
    get_engine(config.engine).check(config, cuda=cuda)


def get_engine(name: str) -> Engine:
    """The engine called ``name`` (``trl`` or ``verl``) with its default options."""
    if name == "verl":
        from gmpo_kfp.engines.verl import VerlEngine

        return VerlEngine()
    if name == "trl":
        from gmpo_kfp.engines.trl import TRLEngine

        return TRLEngine()
    raise ConfigError(f"engine: unknown engine {name!r}; use trl or verl")

"""Config -> the Hydra overrides of ``python3 -m verl.trainer.main_ppo`` (verl 0.9.1).

verl is never imported here: it runs in a child process (or on a Ray cluster)
with these overrides and our loss plugin.

Mapping notes, and what verl cannot honour:

- ``algorithm.loss``: ``gmpo`` selects our registered loss (``loss_mode=gmpo``,
  split-invariant, see :mod:`gmpo_kfp.in_verl.plugin`) where verl's scripts use
  ``geo_mean``; ``grpo`` -> ``vanilla``; ``gspo`` -> ``gspo``.
- ``algorithm.adv_estimator=drgrpo`` -> verl's ``grpo`` with
  ``norm_adv_by_std_in_grpo=False``.
- ``optim.lr_schedule=linear`` has no verl equivalent (constant or cosine); it is
  refused here rather than silently changed. ``optim.adam_beta2`` maps to
  ``optim.betas``.
- ``rollout.val_*`` map to ``rollout.val_kwargs``; verl validates greedily when
  ``val_temperature`` is 0.
- DAPO's overlong reward shaping uses verl 0.9.1's ``reward`` section
  (``reward.reward_manager.name=dapo``, ``+reward.reward_kwargs...``), where the
  July 2025 scripts wrote ``reward_model.reward_manager`` and
  ``+reward_model.reward_kwargs``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gmpo_kfp.config import ConfigError, TrainConfig
from gmpo_kfp.engines.base import Checkpoint, EngineRun, latest
from gmpo_kfp.metrics import parse_record

A = "actor_rollout_ref.actor."
R = "actor_rollout_ref.rollout."
REF = "actor_rollout_ref.ref."
M = "actor_rollout_ref.model."

#: Our loss names -> verl's ``policy_loss.loss_mode``.
VERL_LOSS_MODES = {"gmpo": "gmpo", "grpo": "vanilla", "gspo": "gspo"}


#: verl's custom_reward_function: our grader, so both engines grade alike
REWARD_FUNCTION_PATH = "pkg://gmpo_kfp.reward"
REWARD_FUNCTION_NAME = "compute_score"


def format_value(value: Any) -> str:
    """A Python value as Hydra override syntax."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (list, tuple)):
        items = (f'"{v}"' if isinstance(v, str) else format_value(v) for v in value)
        return "[" + ",".join(items) + "]"
    if isinstance(value, float):
        text = repr(value)  # 1e-06 -> 1.0e-06: Hydra and YAML both read it as a float
        mantissa, e, exponent = text.partition("e")
        return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text
    return str(value)


def verl_device(config: TrainConfig, *, cuda: bool) -> str:
    """``gpu`` or ``cpu``: ``verl.device``, with ``auto`` resolved (``cuda``: a GPU is here)."""
    c = config
    if c.verl.device == "cpu" and c.resources.nnodes > 1:
        raise ConfigError(
            "verl.device: cpu runs on one node; set resources.nnodes=1 or verl.device=gpu"
        )
    if c.verl.device != "auto":
        return c.verl.device
    if c.resources.nnodes == 1 and (c.resources.gpus_per_node == 0 or not cuda):
        return "cpu"
    return "gpu"


#: Ray's logical CPUs on a CPU run: verl's placement groups ask for several per worker.
CPU_RAY_LOGICAL_CPUS = 32


def cpu_override_map(config: TrainConfig) -> dict[str, Any]:
    """What verl on a CPU changes (see :mod:`gmpo_kfp.in_verl.cpu`): one rank, FSDP2, gloo.

    No flash-attention (sdpa), no remove-padding, no torch.compile, no pinned-memory
    offload; the transformers rollout; Ray told of one logical GPU for the one worker.
    """
    from gmpo_kfp.in_verl.cpu import ROLLOUT_NAME

    o: dict[str, Any] = {}
    o["trainer.device"] = "cpu"
    o["trainer.n_gpus_per_node"] = 1
    o["+ray_kwargs.ray_init.num_gpus"] = 1
    o["ray_kwargs.ray_init.num_cpus"] = CPU_RAY_LOGICAL_CPUS
    o[A + "strategy"] = "fsdp2"
    o[A + "use_torch_compile"] = False
    o[A + "fsdp_config.use_torch_compile"] = False
    o[REF + "fsdp_config.param_offload"] = False
    o[M + "use_remove_padding"] = False
    o["+" + M + "override_config.attn_implementation"] = "sdpa"
    if config.lora.enabled:  # the transformers rollout loads merged weights, never adapters
        o[M + "lora.merge"] = True
    o[R + "name"] = ROLLOUT_NAME
    o[R + "tensor_model_parallel_size"] = 1
    o[R + "agent.num_workers"] = 1
    o["reward.num_workers"] = 1
    o["data.dataloader_num_workers"] = 0
    return o


def lora_override_map(config: TrainConfig) -> dict[str, Any]:
    """``lora.*`` -> verl's FSDP LoRA options (``actor_rollout_ref.model.lora_*``).

    verl builds the adapters with ``peft`` as the trl engine does; vLLM rollouts get
    the adapters apart from the base weights (verl's default). verl's FSDP LoRA has no
    dropout, so ``lora.dropout`` above 0 is refused rather than dropped.
    """
    lora = config.lora
    if lora.dropout:
        raise ConfigError(
            f"lora.dropout={lora.dropout} is not available in verl (its FSDP LoRA has no "
            "dropout): set lora.dropout=0 or use the trl engine"
        )
    return {
        M + "lora_rank": lora.rank,
        M + "lora_alpha": lora.alpha,
        M + "target_modules": lora.targets(),
    }


#: What a verl checkpoint may hold (``checkpoint.save_contents``), and what a resume
#: reloads: verl's ``load_contents`` defaults to ``save_contents``, and a checkpoint
#: without model shards resumes at its step with the base model's weights.
CHECKPOINT_CONTENTS = ("model", "optimizer", "extra", "hf_model")
RESUMABLE = ("model", "optimizer", "extra")


def check_checkpoint_contents(config: TrainConfig) -> None:
    """``verl.checkpoint_contents`` gives a final model and, with resume on, a checkpoint a
    retried step can continue from."""
    c = config
    contents = list(c.verl.checkpoint_contents)
    unknown = [x for x in contents if x not in CHECKPOINT_CONTENTS]
    if unknown:
        raise ConfigError(
            f"verl.checkpoint_contents: {unknown[0]!r} is not a checkpoint part; use "
            + ", ".join(CHECKPOINT_CONTENTS)
        )
    if "model" not in contents and "hf_model" not in contents:
        raise ConfigError(
            "verl.checkpoint_contents: neither model nor hf_model; the run would end with no "
            "model (add hf_model, or model for the FSDP merger)"
        )
    missing = [x for x in RESUMABLE if x not in contents]
    if missing and c.trainer.resume == "auto":
        raise ConfigError(
            f"verl.checkpoint_contents: without {', '.join(missing)} a retried step cannot "
            "resume (verl would continue from the base weights); add them, or set "
            "trainer.resume=disable"
        )


def verl_override_map(config: TrainConfig, device: str = "gpu") -> dict[str, Any]:
    """The overrides as an ordered mapping key -> Python value (``device``: gpu or cpu)."""
    c = config
    if c.optim.lr_schedule == "linear":
        raise ConfigError(
            "optim.lr_schedule=linear is not available in verl: use constant or cosine"
        )
    check_checkpoint_contents(c)
    o: dict[str, Any] = {}
    o["algorithm.adv_estimator"] = "grpo"
    if c.algorithm.adv_estimator == "drgrpo":
        o["algorithm.norm_adv_by_std_in_grpo"] = False
    o["algorithm.use_kl_in_reward"] = False
    o["data.train_files"] = list(c.data.train_files)
    o["data.val_files"] = list(c.data.val_files)
    o["data.val_max_samples"] = c.data.val_max_samples
    # verl's default data.seed is null: the training order and the validation subset would
    # change from run to run; the one seed decides them
    o["data.seed"] = c.trainer.seed
    o["data.train_batch_size"] = c.batch.train_batch_size
    o["data.max_prompt_length"] = c.data.max_prompt_length
    o["data.max_response_length"] = c.data.max_response_length
    o["data.filter_overlong_prompts"] = c.data.filter_overlong_prompts
    o["data.truncation"] = c.data.truncation
    o[M + "path"] = c.model.path
    o[M + "use_remove_padding"] = c.model.remove_padding
    o[M + "enable_gradient_checkpointing"] = c.model.gradient_checkpointing
    if c.lora.enabled:
        o.update(lora_override_map(c))
    if c.model.max_position_embeddings is not None:
        o["+" + M + "override_config.max_position_embeddings"] = c.model.max_position_embeddings
    o[A + "optim.lr"] = c.optim.lr
    if c.optim.warmup_steps:
        o[A + "optim.lr_warmup_steps"] = c.optim.warmup_steps
    if c.optim.lr_schedule == "cosine":
        o[A + "optim.lr_scheduler_type"] = "cosine"
    o[A + "optim.weight_decay"] = c.optim.weight_decay
    o[A + "optim.betas"] = [0.9, c.optim.adam_beta2]
    o[A + "grad_clip"] = c.optim.grad_clip
    o[A + "ppo_mini_batch_size"] = c.batch.mini_batch_size
    o[A + "ppo_epochs"] = c.algorithm.ppo_epochs
    if c.batch.dynamic_batch_size:
        o[A + "use_dynamic_bsz"] = True
        o[A + "ppo_max_token_len_per_gpu"] = c.batch.max_token_len_per_gpu
    else:
        o[A + "ppo_micro_batch_size_per_gpu"] = c.batch.micro_batch_size_per_gpu
    o[A + "use_kl_loss"] = c.algorithm.use_kl_loss
    o[A + "kl_loss_coef"] = c.algorithm.kl_beta
    o[A + "kl_loss_type"] = c.algorithm.kl_estimator
    o[A + "policy_loss.loss_mode"] = VERL_LOSS_MODES[c.algorithm.loss]
    o[A + "clip_ratio_low"] = c.algorithm.clip_ratio_low
    o[A + "clip_ratio_high"] = c.algorithm.clip_ratio_high
    o[A + "loss_agg_mode"] = c.algorithm.loss_agg_mode
    o[A + "entropy_coeff"] = c.algorithm.entropy_coeff
    o[A + "ulysses_sequence_parallel_size"] = c.verl.ulysses_sequence_parallel
    o[A + "fsdp_config.param_offload"] = c.verl.actor_param_offload
    o[A + "fsdp_config.optimizer_offload"] = c.verl.actor_optimizer_offload
    o[A + "fsdp_config.fsdp_size"] = c.verl.fsdp_size
    o[A + "checkpoint.save_contents"] = list(c.verl.checkpoint_contents)
    o[R + "name"] = "vllm"
    o[R + "n"] = c.rollout.n
    o[R + "temperature"] = c.rollout.temperature
    o[R + "top_p"] = c.rollout.top_p
    o[R + "val_kwargs.temperature"] = c.rollout.val_temperature
    o[R + "val_kwargs.top_p"] = c.rollout.val_top_p
    o[R + "val_kwargs.n"] = c.rollout.val_n
    o[R + "val_kwargs.do_sample"] = c.rollout.val_temperature > 0
    o[R + "tensor_model_parallel_size"] = c.verl.rollout_tensor_parallel
    o[R + "gpu_memory_utilization"] = c.verl.gpu_memory_utilization
    if c.verl.enable_chunked_prefill is not None:
        o[R + "enable_chunked_prefill"] = c.verl.enable_chunked_prefill
    if c.verl.max_num_batched_tokens is not None:
        o[R + "max_num_batched_tokens"] = c.verl.max_num_batched_tokens
    for section in (R, REF):  # the log-prob passes batch as the actor does
        if c.batch.dynamic_batch_size:
            o[section + "log_prob_use_dynamic_bsz"] = True
            o[section + "log_prob_max_token_len_per_gpu"] = c.batch.max_token_len_per_gpu
        else:
            o[section + "log_prob_micro_batch_size_per_gpu"] = (
                c.batch.log_prob_micro_batch_size_per_gpu
            )
    o[REF + "fsdp_config.param_offload"] = c.verl.ref_param_offload
    o["reward.reward_manager.name"] = c.verl.reward_manager
    if c.verl.reward_function == "gmpo":
        # verl imports pkg:// paths as modules: the installed gmpo_kfp.reward, in every worker
        o["reward.custom_reward_function.path"] = REWARD_FUNCTION_PATH
        o["reward.custom_reward_function.name"] = REWARD_FUNCTION_NAME
    if c.verl.overlong_buffer_len:
        cfg = "+reward.reward_kwargs.overlong_buffer_cfg."
        o[cfg + "enable"] = True
        o[cfg + "len"] = c.verl.overlong_buffer_len
        o[cfg + "penalty_factor"] = c.verl.overlong_penalty_factor
        o[cfg + "log"] = False
        o["+reward.reward_kwargs.max_resp_len"] = c.data.max_response_length
    o["trainer.critic_warmup"] = 0
    o["trainer.nnodes"] = c.resources.nnodes
    o["trainer.n_gpus_per_node"] = c.resources.gpus_per_node
    o["trainer.total_epochs"] = c.trainer.total_epochs
    if c.trainer.total_steps is not None:
        o["trainer.total_training_steps"] = c.trainer.total_steps
    o["trainer.save_freq"] = c.trainer.save_freq
    if c.trainer.max_ckpt_to_keep is not None:
        o["trainer.max_actor_ckpt_to_keep"] = c.trainer.max_ckpt_to_keep
        o["trainer.max_critic_ckpt_to_keep"] = c.trainer.max_ckpt_to_keep
    o["trainer.test_freq"] = c.trainer.test_freq
    o["trainer.val_before_train"] = c.trainer.val_before_train
    o["trainer.resume_mode"] = c.trainer.resume
    o["trainer.default_local_dir"] = f"{c.trainer.output_dir}/checkpoints"
    o["trainer.experiment_name"] = c.name
    o["trainer.logger"] = ["console", "file"]
    o[A + "data_loader_seed"] = c.trainer.seed
    if device == "cpu":
        o.update(cpu_override_map(c))
    return o


def verl_overrides(config: TrainConfig, device: str = "gpu") -> list[str]:
    """``key=value`` strings for ``python3 -m verl.trainer.main_ppo``; ``verl.extra`` last."""
    pairs = [f"{k}={format_value(v)}" for k, v in verl_override_map(config, device).items()]
    return pairs + list(config.verl.extra)


def verl_command(config: TrainConfig, python: str = "python3", device: str = "gpu") -> list[str]:
    """The full argv of the verl launch (Hydra's own logs go under ``output_dir/hydra``)."""
    hydra = [f"hydra.run.dir={config.trainer.output_dir}/hydra", "hydra.output_subdir=null"]
    return [python, "-m", "verl.trainer.main_ppo", *verl_overrides(config, device), *hydra]


# --------------------------------------------------------------------------- launch

#: verl writes this after every file of a checkpoint: the newest complete one.
LATEST_MARKER = "latest_checkpointed_iteration.txt"
#: where, in a checkpoint's ``actor/``, verl saves the model with ``hf_model`` (and its
#: config and tokenizer always)
HF_FOLDER = "huggingface"


class VerlLayout:
    """verl's checkpoints: ``global_step_N/actor``; complete once ``LATEST_MARKER`` reaches N."""

    def complete(self, root: Path) -> list[Checkpoint]:
        try:
            newest = int((root / LATEST_MARKER).read_text().strip())
        except (OSError, ValueError):
            return []
        found = []
        for folder in root.glob("global_step_*"):
            try:
                step = int(folder.name.rsplit("_", 1)[1])
            except ValueError:
                continue
            if step <= newest and (folder / "actor").is_dir():
                found.append(Checkpoint(step, folder))
        return sorted(found, key=lambda c: c.step)

    def restored(self, root: Path, checkpoint: Checkpoint) -> None:
        from gmpo_kfp.storage import write_atomic

        write_atomic(root / LATEST_MARKER, str(checkpoint.step))


def merge_command(
    actor_dir: str | os.PathLike, target: str | os.PathLike, python: str
) -> list[str]:
    """verl's FSDP checkpoint -> Hugging Face model directory."""
    return [
        python,
        "-m",
        "verl.model_merger",
        "merge",
        "--backend",
        "fsdp",
        "--local_dir",
        str(actor_dir),
        "--target_dir",
        str(target),
    ]


def _stream(cmd: list[str], env: dict[str, str], what: str) -> None:
    """Run ``cmd``, passing its output through line by line; a failure names the step."""
    print(f"gmpo: {what}: {' '.join(cmd[:3])} ...", file=sys.stderr, flush=True)
    with subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            sys.stderr.write(line)
            tail = [*tail[-199:], line.rstrip()]
        code = proc.wait()
    if code != 0:
        raise RuntimeError(f"{what} failed with exit code {code}: {failure_line(tail)}")


def failure_line(lines: list[str]) -> str:
    """The line of a failed run's output that says why: its last error, else its last line."""
    said = [t.strip() for t in lines if t.strip() and "HYDRA_FULL_ERROR" not in t]
    errors = [t for t in said if "Error" in t or t.startswith("Could not")]  # Hydra's own
    return (errors or said or ["no output"])[-1]


class LogAppender:
    """Appends the lines verl's file logger writes to ``source`` onto ``target`` as they come.

    verl opens its file logger with ``"wb"``: a resumed run would wipe the records of the
    steps before it. It writes to a file of its own instead, and ``target`` (the run's
    metrics file, which the mirror and the Prometheus exporter follow) keeps them all.
    """

    def __init__(
        self,
        source: Path,
        target: Path,
        *,
        poll_s: float = 0.5,
        on_record: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.source, self.target, self.poll_s = source, target, poll_s
        self.on_record = on_record  # each record appended (the progress lines)
        self._offset = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gmpo-verl-log", daemon=True)

    def drain(self) -> None:
        if not self.source.exists():
            return
        with self.source.open("rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # whole lines only
        if complete:
            with self.target.open("ab") as out:
                out.write(complete)
            self._offset += len(complete)
            if self.on_record is not None:
                for line in complete.splitlines():
                    if (record := parse_record(line)) is not None:
                        self.on_record(record)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.drain()

    def __enter__(self) -> LogAppender:
        self.source.unlink(missing_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.drain()


def cuda_here() -> bool:
    """A CUDA device is visible to this process."""
    import torch

    return torch.cuda.is_available()


class VerlEngine:
    """verl's ``main_ppo`` in a child process (one node) or on a KubeRay RayJob (several).

    verl reads ``data.train_files``/``val_files`` and writes its ``file`` logger records
    to ``output_dir/metrics.jsonl`` (the shape the TRL engine writes); our loss reaches
    every Ray worker through the ``verl.plugins`` entry point, and on a CPU our CPU
    support through ``VERL_USE_EXTERNAL_MODULES`` (:mod:`gmpo_kfp.in_verl.cpu`). The latest
    checkpoint is merged to a Hugging Face model with ``verl.model_merger``.

    ``python``: the interpreter that runs verl (default: this one).
    """

    name = "verl"

    def __init__(self, *, python: str | None = None):
        self.python = python or sys.executable

    def checkpoints(self, config: TrainConfig) -> VerlLayout:
        return VerlLayout()

    def check(self, config: TrainConfig, *, cuda: bool) -> None:
        verl_override_map(config, verl_device(config, cuda=cuda))

    def run(self, config: TrainConfig, *, progress: bool = True) -> EngineRun:
        from gmpo_kfp.evaluation.models import has_weights, replace_dir

        c = config
        device = verl_device(c, cuda=cuda_here())
        out = Path(c.trainer.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        metrics_file = out / "metrics.jsonl"
        verl_log = out / ".verl-metrics.jsonl"  # this invocation's records (see LogAppender)
        env = {"VERL_FILE_LOGGER_PATH": str(verl_log)}
        if device == "cpu":
            from gmpo_kfp.in_verl import cpu as verl_cpu

            why = "verl.device=cpu" if c.verl.device == "cpu" else "no GPU here"
            print(
                f"gmpo: verl on the CPU ({why}): gloo, FSDP2, sdpa attention, "
                f"{verl_cpu.ROLLOUT_NAME} rollouts; set verl.device=gpu for vLLM on GPUs",
                file=sys.stderr,
            )
            env.update(verl_cpu.environment())
        print(f"gmpo: verl engine, {c.algorithm.loss} loss, output {out}", file=sys.stderr)
        start = time.perf_counter()
        shown = None
        if progress:
            from gmpo_kfp.progress import Progress

            here = latest(self.checkpoints(c), out / "checkpoints")
            initial = here.step if here and c.trainer.resume == "auto" else 0
            shown = Progress(f"{c.name} (verl)", c.trainer.total_steps or 0, initial=initial)

        def on_record(record: dict[str, Any]) -> None:
            if shown is not None:
                shown.update(int(record["step"]), record.get("data", {}))

        with LogAppender(verl_log, metrics_file, on_record=on_record):
            if c.resources.nnodes > 1:
                from gmpo_kfp.engines.rayjob import run_on_kuberay

                run_on_kuberay(c, command=verl_command(c, python="python3"), env=env)
            else:
                command = verl_command(c, python=self.python, device=device)
                _stream(command, {**os.environ, **env}, "verl training")
        seconds = time.perf_counter() - start
        if shown is not None:
            shown.close()
        newest = latest(self.checkpoints(c), out / "checkpoints")
        if newest is None:
            raise ConfigError(
                f"verl wrote no checkpoint under {out / 'checkpoints'}: set trainer.save_freq > 0"
            )
        model_dir = out / "model"
        staging = out / ".model.merging"
        shutil.rmtree(staging, ignore_errors=True)
        written = newest.path / "actor" / HF_FOLDER
        if "hf_model" in c.verl.checkpoint_contents and has_weights(written) and not c.lora.enabled:
            # verl saved the whole model in Hugging Face format: nothing to merge
            print(f"gmpo: final model: verl's {written}", file=sys.stderr)
            shutil.copytree(written, staging)
        else:
            _stream(
                merge_command(newest.path / "actor", staging, self.python),
                {**os.environ, **env},
                "verl model merge",
            )
        if c.lora.enabled:
            from gmpo_kfp.engines.lora import merge_in_place

            print("gmpo: merging the LoRA adapters into the final model", file=sys.stderr)
            if not merge_in_place(staging, base=c.model.path):
                raise RuntimeError(
                    f"verl's model merger wrote no LoRA adapters into {staging}: the final "
                    "model would be the untrained base"
                )
        replace_dir(staging, model_dir)
        return EngineRun(
            model_dir=model_dir, metrics_file=metrics_file, steps=newest.step, seconds=seconds
        )

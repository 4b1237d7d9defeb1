"""The one-machine engine: TRL's ``GMPOTrainer`` / ``GRPOTrainer``, driven by our config.

We do not write an RL loop: TRL generates, scores, computes group advantages and
steps the optimiser. What this module adds:

- :func:`trl_args`: :class:`~gmpo_kfp.config.TrainConfig` -> ``GMPOConfig`` (loss
  ``gmpo``) or ``GRPOConfig`` (``grpo``, ``gspo``);
- the loss: :class:`GMPOTrainer` and :class:`GRPOTrainer` replace TRL's
  ``_compute_loss`` (the narrowest hook TRL offers; the log-prob code is TRL's own)
  with :mod:`gmpo_kfp.objective`, for three reasons. TRL's GMPO loss has no safety
  bound on the log-ratio, so a token with log-ratio ~ +1000 and A < 0 gives an
  infinite loss where the spec wants a finite one; a response with no tokens adds
  ``-A`` to TRL's loss value instead of nothing; and the same code then gives GRPO and
  GSPO our exact verl-compatible aggregation and the ratio-range metrics. On
  ordinary batches TRL's GMPO loss and ours agree to 1e-6 (a test shows it);
- :class:`MetricsCallback`: one ``{"step", "data"}`` record per rollout step, verl's
  names (:mod:`gmpo_kfp.metrics`);
- validation Pass@1 every ``trainer.test_freq`` steps, a progress bar, checkpoints
  and ``trainer.resume=auto``;
- the optional supervised warm-up (TRL's ``SFTTrainer``, ``sft.*``).

What TRL cannot honour (:func:`unsupported`): ``batch.dynamic_batch_size``,
``model.remove_padding``, ``data.truncation`` other than ``error`` (over-long prompts
are filtered when ``data.filter_overlong_prompts``, else an error),
``verl.reward_manager=dapo`` and its overlong penalty, more than one GPU in one
process (launch with ``accelerate launch`` for that), and every ``verl.*`` knob.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import is_peft_model
from transformers import TrainerCallback

try:  # trl.experimental warns on import; the API is pinned in pyproject (trl 1.16.x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl import GRPOConfig
        from trl import GRPOTrainer as _TRLGRPOTrainer
        from trl.experimental.gmpo import GMPOConfig
        from trl.experimental.gmpo import GMPOTrainer as _TRLGMPOTrainer
        from trl.extras.profiling import profiling_context
        from trl.models import unwrap_model_for_generation
        from trl.trainer.utils import pad
except ImportError as exc:  # pragma: no cover - trl is a core dependency
    raise ImportError("the trl engine needs trl 1.16: pip install 'trl>=1.16,<1.17'") from exc

from gmpo_kfp import metrics as M
from gmpo_kfp.advantages import kl_estimate
from gmpo_kfp.config import ConfigError, TrainConfig
from gmpo_kfp.data.schema import DataError, read_rl_files
from gmpo_kfp.engines.base import Checkpoint, EngineRun, latest
from gmpo_kfp.engines.sampling import sample, supported
from gmpo_kfp.engines.shared_prefix import completion_log_probs, prompt_groups
from gmpo_kfp.objective import get_policy_loss

_SCHEDULES = {"constant": "constant", "linear": "linear", "cosine": "cosine"}


def unsupported(config: TrainConfig) -> list[str]:
    """Settings of ``config`` the TRL engine ignores, one line each (for a warning)."""
    c, notes = config, []
    if c.batch.dynamic_batch_size:
        notes.append("batch.dynamic_batch_size (TRL pads fixed micro-batches)")
    if c.verl.reward_manager != "naive" or c.verl.overlong_buffer_len:
        notes.append("verl.reward_manager / overlong penalty (TRL has no DAPO reward shaping)")
    if c.resources.gpus_per_node > 1 or c.resources.nnodes > 1:
        notes.append("more than one GPU (one process here; use `accelerate launch` or verl)")
    return notes


def batch_plan(config: TrainConfig) -> dict[str, int]:
    """TRL's batch sizes (in completions) from ours (in prompts).

    One rollout step samples ``train_batch_size`` prompts x ``n``; each optimiser step
    takes ``mini_batch_size`` prompts x ``n`` in micro-batches of
    ``micro_batch_size_per_gpu`` completions; ``ppo_epochs`` passes over the batch.
    """
    b, n = config.batch, config.rollout.n
    mini = b.mini_batch_size * n
    micro = min(b.micro_batch_size_per_gpu, mini)
    if mini % micro:
        raise ConfigError(
            f"batch.micro_batch_size_per_gpu ({micro}) must divide mini_batch_size x rollout.n "
            f"({mini}) for the trl engine; pick a divisor of {mini}"
        )
    generation = b.train_batch_size * n
    return {
        "micro": micro,
        "grad_accum": mini // micro,
        "steps_per_generation": generation // micro,
        "optim_steps_per_rollout": (b.train_batch_size // b.mini_batch_size)
        * config.algorithm.ppo_epochs,
    }


def bf16(config: TrainConfig) -> bool:
    """Whether TRL computes in bfloat16 autocast (``model.bf16``; unset: a CUDA GPU that can)."""
    if config.model.bf16 is not None:
        return config.model.bf16
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def trl_args(config: TrainConfig, output_dir: str, *, max_steps: int) -> GRPOConfig:
    """The TRL config for ``config``; ``max_steps`` counts rollout steps."""
    c = config
    plan = batch_plan(c)
    per_rollout = plan["optim_steps_per_rollout"]
    cls = GMPOConfig if c.algorithm.loss == "gmpo" else GRPOConfig
    schedule = _SCHEDULES[c.optim.lr_schedule]
    if schedule == "constant" and c.optim.warmup_steps:
        schedule = "constant_with_warmup"
    save = c.trainer.save_freq > 0
    cuda = torch.cuda.is_available()
    return cls(
        output_dir=output_dir,
        num_generations=c.rollout.n,
        per_device_train_batch_size=plan["micro"],
        gradient_accumulation_steps=plan["grad_accum"],
        steps_per_generation=plan["steps_per_generation"],
        num_iterations=c.algorithm.ppo_epochs,
        max_steps=max_steps * per_rollout,
        learning_rate=c.optim.lr,
        lr_scheduler_type=schedule,
        warmup_steps=c.optim.warmup_steps,
        weight_decay=c.optim.weight_decay,
        max_grad_norm=c.optim.grad_clip,
        adam_beta2=c.optim.adam_beta2,
        epsilon=c.algorithm.clip_ratio_low,
        epsilon_high=c.algorithm.clip_ratio_high,
        beta=c.algorithm.kl_beta if c.algorithm.use_kl_loss else 0.0,
        temperature=c.rollout.temperature if c.rollout.temperature > 0 else 1e-5,
        top_p=c.rollout.top_p,
        max_completion_length=c.data.max_response_length,
        scale_rewards="none" if c.algorithm.adv_estimator == "drgrpo" else "group",
        seed=c.trainer.seed,
        data_seed=c.trainer.seed,
        logging_steps=per_rollout,
        save_strategy="steps" if save else "no",
        save_steps=c.trainer.save_freq * per_rollout if save else 500,
        save_total_limit=c.trainer.max_ckpt_to_keep,
        report_to=[],
        disable_tqdm=True,
        log_completions=False,
        use_cpu=not cuda,
        bf16=bf16(config),
        gradient_checkpointing=c.model.gradient_checkpointing,
        remove_unused_columns=False,
    )


class _ObjectiveLoss:
    """Mixin: ``_compute_loss`` from :mod:`gmpo_kfp.objective`, plus verl-named metrics."""

    gmpo_loss_name = "gmpo"

    def _objective_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "clip_ratio_low": self.args.epsilon,
            "clip_ratio_high": self.args.epsilon_high or self.args.epsilon,
        }
        if self.gmpo_loss_name != "gmpo":
            kwargs["loss_agg_mode"] = self.gmpo_loss_agg_mode
        return kwargs

    def _rows_to_forward(self, inputs) -> torch.Tensor | None:
        """The rows the update learns from, or ``None`` for all of them.

        On-policy (no old log-probs: every ratio is 1) and with neither a KL nor an
        entropy term, a row whose advantage is 0 adds exactly nothing to the policy
        loss or its gradient; GRPO-style groups whose completions all scored the same
        are such rows (often half of a batch). Their forward and backward are skipped;
        they stay in the loss as rows of log-ratio 0, so every normaliser is the same.
        """
        if (
            not self.gmpo_skip_zero_advantage
            or inputs.get("old_per_token_logps") is not None
            or self.beta != 0.0
            or self.gmpo_entropy_coeff
        ):
            return None
        learns = inputs["advantages"] != 0
        if learns.all() or not learns.any():
            return None
        return learns.nonzero().squeeze(1)

    def _completion_logps(self, model, prompt_ids, prompt_mask, completion_ids, completion_mask):
        """Log-probs and entropies of the completions: TRL's forward, or one per distinct prompt.

        The shared-prefix forward (:mod:`gmpo_kfp.engines.shared_prefix`) where the batch
        repeats prompts and the model keeps a KV cache in training; TRL's otherwise.
        """
        groups = prompt_groups(prompt_ids, prompt_mask) if self._shared_prefix(model) else None
        if groups is not None:
            with self.accelerator.autocast():
                return completion_log_probs(
                    model,
                    prompt_ids,
                    prompt_mask,
                    completion_ids,
                    completion_mask,
                    groups,
                    compute_entropy=True,
                )
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        logps, entropies, _ = self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, completion_ids.size(1), compute_entropy=True
        )
        return logps, entropies

    def _shared_prefix(self, model) -> bool:
        if not hasattr(self, "_gmpo_peft"):  # accelerate's check costs milliseconds a call
            self._gmpo_peft = is_peft_model(model)
        return (
            self.gmpo_shared_prefix
            and self._one_plain_process()
            and not self._gmpo_peft
            and not self.args.gradient_checkpointing
            and not getattr(self, "_is_vlm", False)
        )

    def _one_plain_process(self) -> bool:
        """One process holding the whole model: no DDP wrapper, no sharding."""
        return (
            self.accelerator.num_processes == 1
            and not self.is_deepspeed_enabled
            and not self.is_fsdp_enabled
        )

    def _compute_loss(self, model, inputs):
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        rows = self._rows_to_forward(inputs)
        parts = (prompt_ids, prompt_mask, completion_ids, completion_mask)
        if rows is not None:
            parts = tuple(part[rows] for part in parts)
        logps, entropies = self._completion_logps(model, *parts)
        entropy_mask = parts[3]  # the entropy of the rows the update learns from
        if rows is not None:  # the skipped rows: log-prob 0 now and before, ratio 1
            logps = logps.new_zeros(completion_mask.shape).index_copy(0, rows, logps)
        old = inputs.get("old_per_token_logps")
        old = logps.detach() if old is None else old
        mask = completion_mask.to(logps.dtype)
        advantages = inputs["advantages"].unsqueeze(1).expand_as(logps)
        loss_fn = get_policy_loss(self.gmpo_loss_name)
        pg_loss, stats = loss_fn(old, logps, advantages, mask, **self._objective_kwargs())
        loss = pg_loss
        record = self._gmpo_step_metrics
        if self.beta != 0.0:
            kl = kl_estimate(logps, inputs["ref_per_token_logps"], self.gmpo_kl_estimator)
            kl_loss = (kl * mask).sum() / mask.sum().clamp(min=1.0)
            loss = loss + self.beta * kl_loss
            record[M.KL_LOSS].append(kl_loss.item())
        entropy_mask = entropy_mask.to(entropies.dtype)
        entropy = ((entropies * entropy_mask).sum() / entropy_mask.sum().clamp(min=1.0)).detach()
        if self.gmpo_entropy_coeff:
            loss = loss - self.gmpo_entropy_coeff * ((entropies * mask).sum() / mask.sum())
        record[M.PG_LOSS].append(pg_loss.item())
        record[M.ENTROPY].append(entropy.item())
        for name, value in stats.items():
            record[f"actor/{name}"].append(float(value))
        return loss / self.current_gradient_accumulation_steps

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, *args, **kwargs):
        """TRL's rollouts, sampled by :func:`gmpo_kfp.engines.sampling.sample` where it can.

        That is: one process, no vLLM, text only, no tools, plain temperature sampling;
        the same tokens as TRL's ``model.generate`` for the same seed, at less cost.
        Anything else goes to TRL.
        """
        if not self._plain_sampling(images, multimodal_fields):
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, *args, **kwargs
            )
        pad_id = self._tokenizer.pad_token_id
        prompts = [torch.tensor(ids) for ids in prompt_ids]
        input_ids = pad(prompts, padding_value=pad_id, padding_side="left")
        mask = pad([torch.ones_like(t) for t in prompts], padding_value=0, padding_side="left")
        device = self.accelerator.device
        with (
            profiling_context(self, "gmpo.sample"),
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as model,
        ):
            completions = sample(
                model,
                input_ids.to(device),
                mask.to(device),
                max_new_tokens=self.max_completion_length,
                temperature=self.temperature,
                eos_token_ids=self.eos_token_ids,
                pad_token_id=pad_id,
            )
        eos = torch.tensor(self.eos_token_ids, device=completions.device)
        ended = torch.isin(completions, eos)
        # keep each completion up to and with its first EOS (TRL's mask)
        length = torch.where(ended.any(1), ended.int().argmax(1) + 1, completions.size(1))
        return [
            c[:n].tolist() for c, n in zip(completions.cpu(), length.tolist(), strict=True)
        ], None

    def _plain_sampling(self, images, multimodal_fields) -> bool:
        args = self.args
        return (
            self.gmpo_plain_sampling
            and not self.use_vllm
            and not getattr(self, "use_transformers_continuous_batching", False)
            and self._one_plain_process()
            and not getattr(self, "_is_vlm", False)
            and not getattr(self, "tools", None)
            and not multimodal_fields
            and (images is None or all(i is None for i in images))
            and not self.pad_to_multiple_of
            and args.generation_kwargs is None
            and args.cache_implementation is None
            and supported(
                temperature=self.temperature,
                top_p=self.top_p,
                top_k=self.top_k,
                min_p=self.min_p,
                repetition_penalty=self.repetition_penalty,
            )
        )

    def _generate_and_score_completions(self, inputs):
        start = time.perf_counter()
        try:
            # sampling in the loss's precision (TRL's generate runs outside its autocast)
            with self.accelerator.autocast():
                return super()._generate_and_score_completions(inputs)
        finally:
            self._gmpo_step_metrics[M.TIMING_GEN].append(time.perf_counter() - start)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        for name, values in self._gmpo_step_metrics.items():
            if values:
                reduce = M.REDUCTIONS.get(name)
                logs[name] = reduce(values) if reduce else sum(values) / len(values)
        self._gmpo_step_metrics.clear()
        super().log(logs, start_time)


def seed_per_epoch(sampler: Any) -> Any:
    """TRL's ``RepeatSampler``, its shuffle made a function of (seed, epoch) alone.

    TRL's sampler seeds its generator once and draws a new permutation per epoch, so a
    run resumed after an epoch boundary (a new sampler) shuffles differently from an
    uninterrupted one. The Trainer calls ``set_epoch`` before each epoch (through
    accelerate's data loader); reseeding there makes a resumed run exact.
    """
    seed = getattr(sampler, "seed", None)
    generator = getattr(sampler, "generator", None)
    if seed is None or generator is None:
        return sampler

    def set_epoch(epoch: int) -> None:
        generator.manual_seed(seed + epoch)

    sampler.set_epoch = set_epoch
    return sampler


class _ExactResume:
    """Mixin: the training sampler reseeds per epoch (see :func:`seed_per_epoch`)."""

    def _get_train_sampler(self, dataset: Any = None) -> Any:
        return seed_per_epoch(super()._get_train_sampler(dataset))


def _init_objective(trainer: Any, config: TrainConfig) -> None:
    trainer.gmpo_loss_name = config.algorithm.loss
    trainer.gmpo_loss_agg_mode = config.algorithm.loss_agg_mode
    trainer.gmpo_kl_estimator = config.algorithm.kl_estimator
    trainer.gmpo_entropy_coeff = config.algorithm.entropy_coeff
    trainer._gmpo_step_metrics = defaultdict(list)
    trainer.gmpo_skip_zero_advantage = True
    trainer.gmpo_plain_sampling = True
    trainer.gmpo_shared_prefix = True


class GMPOTrainer(_ExactResume, _ObjectiveLoss, _TRLGMPOTrainer):
    """TRL's GMPOTrainer with :func:`gmpo_kfp.objective.gmpo_loss` as its loss."""

    def __init__(self, *args: Any, gmpo_config: TrainConfig, **kwargs: Any):
        _init_objective(self, gmpo_config)
        super().__init__(*args, **kwargs)


class GRPOTrainer(_ExactResume, _ObjectiveLoss, _TRLGRPOTrainer):
    """TRL's GRPOTrainer with our ``grpo`` or ``gspo`` loss (the baselines)."""

    def __init__(self, *args: Any, gmpo_config: TrainConfig, **kwargs: Any):
        _init_objective(self, gmpo_config)
        super().__init__(*args, **kwargs)


def trainer_class(config: TrainConfig) -> type:
    return GMPOTrainer if config.algorithm.loss == "gmpo" else GRPOTrainer


# --------------------------------------------------------------------------- callbacks


class ValidationCallback(TrainerCallback):
    """Pass@1 on the validation rows every ``every`` rollout steps (and before training)."""

    def __init__(
        self,
        rows: Sequence[dict],
        *,
        every: int,
        per_rollout: int,
        before: bool,
        temperature: float,
        top_p: float,
        n: int,
        max_new_tokens: int,
        seed: int,
    ):
        self.rows, self.every, self.per_rollout, self.before = rows, every, per_rollout, before
        self.sampling = {"temperature": temperature, "top_p": top_p, "n": n}
        self.max_new_tokens, self.seed = max_new_tokens, seed
        self.pending: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.tokenizer: Any = None

    def run(self, model: Any) -> dict[str, float]:
        from gmpo_kfp.evaluation.evaluate import pass_at_1

        start = time.perf_counter()
        result = pass_at_1(
            model,
            self.tokenizer,
            self.rows,
            protocol="greedy" if self.sampling["temperature"] == 0 else "sampled",
            n=self.sampling["n"],
            temperature=self.sampling["temperature"],
            top_p=self.sampling["top_p"],
            max_new_tokens=self.max_new_tokens,
            seed=self.seed,
        )
        n = result.samples_per_problem
        self.last = {M.val_metric(src, n): v for src, v in result.pass_at_1.items()}
        self.last[M.PASS_AT_1] = result.mean
        self.last[M.TIMING_TESTING] = time.perf_counter() - start
        return self.last

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kw):
        self.tokenizer = processing_class
        if self.rows and self.before and state.global_step == 0:
            self.pending = {"step0": 1.0, **self.run(model)}

    def on_step_end(self, args, state, control, model=None, **kw):
        due = self.every > 0 and state.global_step % (self.every * self.per_rollout) == 0
        last = self.every > 0 and state.global_step >= state.max_steps
        if self.rows and (due or last) and state.global_step % self.per_rollout == 0:
            self.pending = self.run(model)


class MetricsCallback(TrainerCallback):
    """Writes one verl-shaped record per rollout step to the metrics file."""

    def __init__(
        self, writer: M.MetricsWriter, validation: ValidationCallback | None, *, per_rollout: int
    ):
        self.writer, self.validation, self.per_rollout = writer, validation, per_rollout
        self._last_time = time.perf_counter()
        self.last: dict[str, float] = {}

    def on_train_begin(self, args, state, control, **kw):
        v = self.validation
        if v is not None and v.pending.pop("step0", None):
            self.writer.write(0, v.pending)
            v.pending = {}
        self._last_time = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        if "train_runtime" in logs:  # the closing summary TRL logs once
            return
        data: dict[str, float] = {}
        for key, value in logs.items():
            if key in M.TRL_TO_VERL:
                data[M.TRL_TO_VERL[key]] = value
            elif key.startswith(("actor/", "critic/", "val-core/", "timing_s/")):
                data[key] = value
        now = time.perf_counter()
        data[M.TIME_PER_STEP] = now - self._last_time
        self._last_time = now
        if torch.cuda.is_available():  # this process trains: its own peak, as verl logs it
            data[M.GPU_MEMORY_GB] = torch.cuda.max_memory_allocated() / 2**30
        if self.validation is not None and self.validation.pending:
            data.update(self.validation.pending)
            self.validation.pending = {}
        step = state.global_step // self.per_rollout
        self.writer.write(step, data)
        self.last = data


class ProgressCallback(TrainerCallback):
    """Rollout steps with the reward and the latest Pass@1 (:class:`gmpo_kfp.progress.Progress`:
    a bar on a terminal, plain lines elsewhere)."""

    def __init__(
        self, total: int, metrics: Any, *, per_rollout: int, desc: str, until: str | None = None
    ):
        # ``metrics``: any object whose ``last`` dict holds the latest metric values;
        # ``until``: the goal a phase stops at before ``total`` (Progress's ``until``)
        self.total, self.metrics, self.per_rollout, self.desc = total, metrics, per_rollout, desc
        self.until = until
        self.progress: Any = None

    def on_train_begin(self, args, state, control, **kw):
        from gmpo_kfp.progress import Progress

        initial = state.global_step // self.per_rollout
        self.progress = Progress(self.desc, self.total, initial=initial, until=self.until)

    def on_log(self, args, state, control, logs=None, **kw):
        if self.progress is not None:
            self.progress.update(state.global_step // self.per_rollout, self.metrics.last)

    def on_train_end(self, args, state, control, **kw):
        if self.progress is not None:
            self.progress.update(state.global_step // self.per_rollout, self.metrics.last)
            self.progress.close()
            self.progress = None


class StopAtPassRate(TrainerCallback):
    """Supervised warm-up: stop once greedy Pass@1 on the check rows reaches ``target``.

    Checks every ``every`` steps; once a check reaches half the target, every
    ``every_near`` steps (when set), since Pass@1 climbs fast near the target and a
    coarse check would stop well past it.
    """

    def __init__(
        self,
        rows: Sequence[dict],
        *,
        target: float,
        every: int,
        max_new_tokens: int,
        every_near: int = 0,
    ):
        self.rows, self.target, self.max_new_tokens = rows, target, max_new_tokens
        self.every, self.every_near = every, every_near or every
        self.history: list[tuple[int, float]] = []
        self.tokenizer: Any = None
        self.last: dict[str, float] = {}

    def interval(self) -> int:
        """Steps until the next check: ``every_near`` once a check reached half the target."""
        near = bool(self.history) and self.history[-1][1] >= self.target / 2
        return self.every_near if near else self.every

    def on_train_begin(self, args, state, control, processing_class=None, **kw):
        self.tokenizer = processing_class

    def on_step_end(self, args, state, control, model=None, **kw):
        last = self.history[-1][0] if self.history else 0
        if state.global_step - last < self.interval():
            return
        from gmpo_kfp.evaluation.evaluate import pass_at_1

        score = pass_at_1(model, self.tokenizer, self.rows, max_new_tokens=self.max_new_tokens).mean
        self.history.append((state.global_step, score))
        self.last = {M.PASS_AT_1: score}
        if score >= self.target:
            control.should_training_stop = True


# --------------------------------------------------------------------------- runs


def _rl_dataset(rows: Sequence[dict]) -> Any:
    from datasets import Dataset

    return Dataset.from_list(
        [
            {
                "prompt": list(r["prompt"]),
                "data_source": r["data_source"],
                "reward_model": {"ground_truth": r["reward_model"]["ground_truth"]},
            }
            for r in rows
        ]
    )


def val_subset(rows: list[dict], config: TrainConfig) -> list[dict]:
    """``data.val_max_samples`` of the validation rows, chosen as verl chooses them (a
    seeded ``numpy`` choice without replacement, in its order); all when -1 or enough."""
    size = config.data.val_max_samples
    if size < 0 or size >= len(rows):
        return rows
    chosen = np.random.default_rng(config.trainer.seed).choice(len(rows), size, replace=False)
    return [rows[i] for i in chosen.tolist()]


def sft_args(config: TrainConfig, output_dir: str) -> Any:
    """The warm-up's TRL ``SFTConfig``: ``sft.*``, the seed, our lengths and precision,
    and ``model.gradient_checkpointing`` (TRL's default is on, and with it the warm-up
    recomputed every layer's forward: tiny-cpu's took 82 s with it, 69 s without)."""
    from trl import SFTConfig

    s = config.sft
    return SFTConfig(
        output_dir=output_dir,
        per_device_train_batch_size=s.batch_size,
        learning_rate=s.lr,
        lr_scheduler_type="constant",
        max_steps=s.max_steps,
        seed=config.trainer.seed,
        data_seed=config.trainer.seed,
        max_length=config.data.max_prompt_length + config.data.max_response_length + 1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        logging_steps=max(1, s.eval_every),
        use_cpu=not torch.cuda.is_available(),
        bf16=bf16(config),
        gradient_checkpointing=config.model.gradient_checkpointing,
        dataset_num_proc=None,
    )


def sft_warmup(
    config: TrainConfig,
    model: Any,
    tokenizer: Any,
    sft_rows: Sequence[dict],
    check_rows: Sequence[dict],
    output_dir: Path,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Supervised warm-up on the answers of ``sft_rows`` until the Pass@1 target; in place."""
    from datasets import Dataset
    from trl import SFTTrainer

    s = config.sft
    data = Dataset.from_list(
        [
            {
                "prompt": list(r["prompt"]),
                "completion": [
                    {"role": "assistant", "content": _first(r["reward_model"]["ground_truth"])}
                ],
            }
            for r in sft_rows
        ]
    )
    args = sft_args(config, str(output_dir))
    stop = StopAtPassRate(
        list(check_rows)[: s.eval_prompts],
        target=s.target_pass_at_1,
        every=s.eval_every,
        every_near=s.eval_every_near,
        max_new_tokens=config.data.max_response_length,
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=data, processing_class=tokenizer, callbacks=[stop]
    )
    _quiet(trainer)
    if progress:
        until = f"pass@1 {s.target_pass_at_1:g}"
        trainer.add_callback(
            ProgressCallback(s.max_steps, stop, per_rollout=1, desc="warm-up", until=until)
        )
    start = time.perf_counter()
    trainer.train()
    return {
        "steps": trainer.state.global_step,
        "seconds": time.perf_counter() - start,
        "pass_at_1": stop.history[-1][1] if stop.history else None,
        "reached": bool(stop.history) and stop.history[-1][1] >= s.target_pass_at_1,
    }


def _quiet(trainer: Any) -> None:
    """No per-step log dicts on stdout: our progress bar and metrics file say it."""
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_callback import ProgressCallback as HFProgress

    for cb in (PrinterCallback, HFProgress):
        trainer.remove_callback(cb)


def _first(truth: Any) -> str:
    return truth if isinstance(truth, str) else str(next(iter(truth)))


class TRLLayout:
    """TRL's checkpoints: ``checkpoint-<optimiser step>``, complete once ``trainer_state.json``
    (the Trainer's last file) parses."""

    def __init__(self, per_rollout: int):
        self.per_rollout = per_rollout

    def complete(self, root: Path) -> list[Checkpoint]:
        found = []
        for folder in root.glob("checkpoint-*"):
            try:
                optim_step = int(folder.name.rsplit("-", 1)[1])
                json.loads((folder / "trainer_state.json").read_text())
            except (ValueError, OSError):
                continue
            found.append(Checkpoint(optim_step // self.per_rollout, folder))
        return sorted(found, key=lambda c: c.step)

    def restored(self, root: Path, checkpoint: Checkpoint) -> None:
        return None  # the Trainer resumes from the folder it is given


def _no_library_bars() -> None:
    """No per-map bars from datasets and transformers: our own bars say how far a run is."""
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()


def warm_up(config: TrainConfig, base: str, target: Path, *, progress: bool = True) -> dict:
    """The supervised warm-up (``sft.*``) of the model at ``base``, saved to ``target``.

    Runs before RL on either engine; checks Pass@1 on the RL training prompts. The
    caller has checked the data files (:func:`gmpo_kfp.engines.training.check_inputs`).
    """
    from transformers import AutoModelForCausalLM

    from gmpo_kfp.evaluation.models import load_tokenizer, save_model_dir

    _no_library_bars()
    c = config
    sft_rows = read_rl_files(c.data.sft_files, "data.sft_files")
    check_rows = read_rl_files(c.data.train_files, "data.train_files")
    tokenizer = load_tokenizer(base)
    torch.manual_seed(c.trainer.seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    print(f"gmpo: supervised warm-up on {len(sft_rows)} examples", file=sys.stderr)
    info = sft_warmup(
        c, model, tokenizer, sft_rows, check_rows, target.parent / "sft", progress=progress
    )
    save_model_dir(model, tokenizer, target)
    print(
        f"gmpo: warm-up stopped after {info['steps']} steps "
        f"({info['seconds']:.0f} s), check Pass@1 {info['pass_at_1']}",
        file=sys.stderr,
    )
    return info


class TRLEngine:
    """TRL's ``GMPOTrainer`` / ``GRPOTrainer`` on this machine (see the module docstring).

    ``callbacks``: extra ``transformers.TrainerCallback`` objects; ``overrides``: fields of
    the generated ``GMPOConfig``/``GRPOConfig`` our config does not cover (e.g.
    ``{"generation_kwargs": {"min_new_tokens": 32}}``).
    """

    name = "trl"

    def __init__(
        self,
        *,
        callbacks: Sequence[TrainerCallback] = (),
        overrides: dict[str, Any] | None = None,
    ):
        self.callbacks = list(callbacks)
        self.overrides = dict(overrides or {})

    def checkpoints(self, config: TrainConfig) -> TRLLayout:
        return TRLLayout(batch_plan(config)["optim_steps_per_rollout"])

    def check(self, config: TrainConfig, *, cuda: bool) -> None:
        batch_plan(config)

    def run(self, config: TrainConfig, *, progress: bool = True) -> EngineRun:
        """Train with TRL as ``config`` says, from ``model.path``, resuming when asked."""
        from transformers import AutoModelForCausalLM

        from gmpo_kfp.evaluation.models import load_tokenizer, save_model_dir

        _no_library_bars()
        c = config
        for note in unsupported(c):
            warnings.warn(f"the trl engine ignores {note}", UserWarning, stacklevel=2)
        train_rows = read_rl_files(c.data.train_files, "data.train_files")
        if not train_rows:
            raise DataError(
                "data.train_files: the files hold no rows; give a non-empty parquet file"
            )
        val_rows = val_subset(read_rl_files(c.data.val_files, "data.val_files"), c)
        print(
            f"gmpo: trl engine, {c.algorithm.loss} loss, {len(train_rows)} training prompts, "
            f"output {c.trainer.output_dir}",
            file=sys.stderr,
        )
        out = Path(c.trainer.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        plan = batch_plan(c)
        per_rollout = plan["optim_steps_per_rollout"]
        if len(train_rows) < c.batch.train_batch_size:
            raise ConfigError(
                f"batch.train_batch_size ({c.batch.train_batch_size}) exceeds the "
                f"{len(train_rows)} training prompts: lower it or add data"
            )
        steps = c.trainer.total_steps or c.trainer.total_epochs * (
            len(train_rows) // c.batch.train_batch_size
        )
        ckpt_dir = out / "checkpoints"
        resume = latest(self.checkpoints(c), ckpt_dir) if c.trainer.resume == "auto" else None
        tokenizer = load_tokenizer(c.model.path)
        torch.manual_seed(c.trainer.seed)
        model = AutoModelForCausalLM.from_pretrained(c.model.path)
        args = trl_args(c, str(ckpt_dir), max_steps=steps)
        for key, value in self.overrides.items():
            if not hasattr(args, key):
                raise ConfigError(f"trl_overrides: {type(args).__name__} has no field {key!r}")
            setattr(args, key, value)
        validation = None
        if val_rows and c.trainer.test_freq != 0:
            validation = ValidationCallback(
                val_rows,
                every=c.trainer.test_freq,
                per_rollout=per_rollout,
                before=c.trainer.val_before_train and resume is None,
                temperature=c.rollout.val_temperature,
                top_p=c.rollout.val_top_p,
                n=c.rollout.val_n,
                max_new_tokens=c.data.max_response_length,
                seed=c.trainer.seed,
            )
        writer = M.MetricsWriter(out / "metrics.jsonl")
        metrics_cb = MetricsCallback(writer, validation, per_rollout=per_rollout)
        callbacks = [*(cb for cb in (validation, metrics_cb) if cb is not None), *self.callbacks]
        if progress:
            callbacks.append(
                ProgressCallback(steps, metrics_cb, per_rollout=per_rollout, desc=c.name)
            )
        from gmpo_kfp.engines import lora
        from gmpo_kfp.reward import trl_reward

        adapters = lora.peft_config(c)
        trainer = trainer_class(c)(
            model=model,
            reward_funcs=[trl_reward],
            args=args,
            train_dataset=_rl_dataset(train_rows),
            processing_class=tokenizer,
            callbacks=callbacks,
            peft_config=adapters,
            gmpo_config=c,
        )
        if adapters is not None:
            trainable, total = trainer.model.get_nb_trainable_parameters()
            print(
                f"gmpo: LoRA rank {c.lora.rank}, alpha {c.lora.alpha} on "
                f"{c.lora.targets()}: {trainable:,} of {total:,} parameters train "
                f"({100 * trainable / total:.2f}%)",
                file=sys.stderr,
            )
        _quiet(trainer)
        start = time.perf_counter()
        try:
            trainer.train(resume_from_checkpoint=str(resume.path) if resume else None)
        finally:
            writer.close()
        seconds = time.perf_counter() - start
        if adapters is not None:
            model_dir = lora.save_merged(trainer.model, tokenizer, out / "model", base=c.model.path)
        else:
            model_dir = save_model_dir(trainer, tokenizer, out / "model")
        return EngineRun(
            model_dir=model_dir,
            metrics_file=out / "metrics.jsonl",
            steps=trainer.state.global_step // per_rollout,
            seconds=seconds,
        )

"""The typed training config shared by both engines (TRL on one machine, verl on a cluster).

One :class:`TrainConfig` made of small sections. Every field has a ``help`` text
and is validated when the config is built; a bad value raises :class:`ConfigError`
with one line naming the dotted field and the fix. Configs load from YAML
(:func:`load_config`) and take dotted overrides (``--set optim.lr=1e-6``,
:func:`apply_overrides`); an unknown key is an error, never ignored.

What an engine cannot honour is documented where it maps the config
(:mod:`gmpo_kfp.engines.verl`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from gmpo_kfp.errors import UserError
from gmpo_kfp.names import KL_ESTIMATORS, LOSS_AGG_MODES, LOSS_NAMES
from gmpo_kfp.settings import KUEUE_PRIORITY_LABEL, KUEUE_QUEUE_LABEL, PIPELINE_NAME

__all__ = [
    "ConfigError",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "field_help",
    "load_config",
    "parse_override",
    "with_values",
]

#: MoE models train less stably; the GMPO authors advise this clip or lower.
MOE_MAX_CLIP = 0.2


class ConfigError(UserError, ValueError):
    """A config value or key is wrong; the message names the field and the fix."""


def _f(default: Any, help: str, **rules: Any) -> Any:
    """A dataclass field with its documentation and validation rules in metadata.

    Rules: ``min`` / ``max`` (inclusive), ``gt`` (exclusive lower bound),
    ``choices`` (allowed values), ``pattern`` (a ``(regex, what it must be)`` pair a
    string must match in full).
    """
    meta = {"help": help, **rules}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


class _Section:
    """A config section: validates its fields when constructed."""

    _prefix: ClassVar[str] = ""

    def __post_init__(self) -> None:
        _validate(self, self._prefix)


@dataclass
class ModelConfig(_Section):
    _prefix: ClassVar[str] = "model."
    path: str = _f("tiny", "model to train: a Hugging Face id, a local model directory, or 'tiny'")
    moe: bool = _f(False, "the model is a mixture of experts (clip above 0.2 warns)")
    gradient_checkpointing: bool = _f(False, "recompute activations in backward to save memory")
    bf16: bool | None = _f(
        None,
        "trl: compute in bfloat16 autocast (weights, optimiser state and log-probs stay "
        "float32); unset: on a CUDA GPU that has bfloat16, not on a CPU",
    )
    remove_padding: bool = _f(True, "verl: pack sequences without padding (use_remove_padding)")
    max_position_embeddings: int | None = _f(
        None, "override the model's max_position_embeddings (e.g. 32768 for long responses)", gt=0
    )


@dataclass
class DataConfig(_Section):
    _prefix: ClassVar[str] = "data."
    train_files: list[str] = _f([], "training data: verl RL parquet files (local paths or s3://)")
    val_files: list[str] = _f([], "validation data: verl RL parquet files")
    val_max_samples: int = _f(
        -1,
        "validate during training on a random subset of this many validation rows (-1: all; "
        "verl's data.val_max_samples; the evaluate step still scores every row)",
        min=-1,
    )
    sft_files: list[str] = _f([], "supervised warm-up data (sft.enabled): verl RL parquet files")
    task: str = _f(
        "",
        "built-in task generated into output_dir/data when a file list is empty ('' for none)",
        choices=("", "arithmetic"),
    )
    max_prompt_length: int = _f(1024, "longest prompt in tokens", gt=0)
    max_response_length: int = _f(1024, "longest sampled response in tokens", gt=0)
    filter_overlong_prompts: bool = _f(True, "drop prompts longer than max_prompt_length")
    truncation: str = _f(
        "error",
        "what to do with a prompt that is still too long",
        choices=("error", "left", "right"),
    )


@dataclass
class AlgorithmConfig(_Section):
    _prefix: ClassVar[str] = "algorithm."
    loss: str = _f("gmpo", "policy loss", choices=LOSS_NAMES)
    clip_ratio_low: float = _f(0.4, "lower clip bound (log space for gmpo, ratio space else)", gt=0)
    clip_ratio_high: float = _f(
        0.4, "upper clip bound (log space for gmpo, ratio space else)", gt=0
    )
    adv_estimator: str = _f(
        "grpo", "advantage: grpo (mean/std) or drgrpo (mean only)", choices=("grpo", "drgrpo")
    )
    use_kl_loss: bool = _f(False, "add a KL-to-reference loss (needs a reference model)")
    kl_beta: float = _f(0.001, "weight of the KL loss when use_kl_loss is on", min=0)
    kl_estimator: str = _f(
        "low_var_kl", "KL estimator for the KL loss", choices=tuple(KL_ESTIMATORS)
    )
    entropy_coeff: float = _f(0.0, "entropy bonus weight", min=0)
    ppo_epochs: int = _f(1, "optimisation passes over each rollout batch", gt=0)
    loss_agg_mode: str = _f(
        "token-mean",
        "aggregation of per-token losses for grpo/gspo (gmpo aggregates per sequence)",
        choices=LOSS_AGG_MODES,
    )


@dataclass
class RolloutConfig(_Section):
    _prefix: ClassVar[str] = "rollout."
    n: int = _f(8, "responses sampled per prompt (the group size)", gt=0)
    temperature: float = _f(1.0, "sampling temperature for training rollouts", min=0)
    top_p: float = _f(1.0, "nucleus sampling for training rollouts", gt=0, max=1)
    val_temperature: float = _f(0.0, "validation sampling temperature (0 = greedy)", min=0)
    val_top_p: float = _f(1.0, "validation nucleus sampling", gt=0, max=1)
    val_n: int = _f(1, "validation samples per prompt", gt=0)


@dataclass
class OptimConfig(_Section):
    _prefix: ClassVar[str] = "optim."
    lr: float = _f(1e-6, "learning rate", gt=0)
    warmup_steps: int = _f(0, "linear learning-rate warm-up steps", min=0)
    lr_schedule: str = _f(
        "constant", "learning rate after warm-up", choices=("constant", "linear", "cosine")
    )
    weight_decay: float = _f(0.01, "AdamW weight decay", min=0)
    grad_clip: float = _f(1.0, "gradient norm clip", gt=0)
    adam_beta2: float = _f(0.999, "AdamW beta2", gt=0, max=1)


@dataclass
class BatchConfig(_Section):
    _prefix: ClassVar[str] = "batch."
    train_batch_size: int = _f(128, "prompts per rollout batch", gt=0)
    mini_batch_size: int = _f(128, "prompts per optimiser step (ppo_mini_batch_size)", gt=0)
    micro_batch_size_per_gpu: int = _f(8, "sequences per forward/backward on one GPU", gt=0)
    log_prob_micro_batch_size_per_gpu: int = _f(
        16, "sequences per log-prob forward (rollout and reference)", gt=0
    )
    dynamic_batch_size: bool = _f(False, "pack micro-batches by token count (use_dynamic_bsz)")
    max_token_len_per_gpu: int = _f(16384, "token budget per GPU with dynamic_batch_size", gt=0)


@dataclass
class TrainerConfig(_Section):
    _prefix: ClassVar[str] = "trainer."
    total_epochs: int = _f(1, "passes over the training prompts", gt=0)
    total_steps: int | None = _f(None, "stop after this many rollout steps (None: epochs)", gt=0)
    save_freq: int = _f(100, "checkpoint every N steps (-1: never)", min=-1)
    test_freq: int = _f(100, "validate every N steps (-1: never)", min=-1)
    val_before_train: bool = _f(True, "validate once before the first step")
    seed: int = _f(42, "random seed", min=0)
    output_dir: str = _f("runs/gmpo", "checkpoints, metrics and the final model go here")
    resume: str = _f(
        "auto",
        "continue from the latest checkpoint (auto) or start over",
        choices=("auto", "disable"),
    )
    max_ckpt_to_keep: int | None = _f(
        None,
        "keep the newest K checkpoints, local and mirrored (verl's max_actor_ckpt_to_keep, "
        "TRL's save_total_limit; None: all)",
        gt=0,
    )


@dataclass
class StorageConfig(_Section):
    """S3 transfers (boto3's managed transfer) and background checkpoint mirroring.

    A field left at None takes its ``GMPO_S3_*`` environment variable, else the
    default of :class:`gmpo_kfp.transfer.TransferSettings`."""

    _prefix: ClassVar[str] = "storage."
    max_concurrency: int | None = _f(
        None, "requests in flight per transfer: parts, ranged GETs, small files", gt=0
    )
    part_size_mb: float | None = _f(
        None, "MiB per part and per ranged GET (S3 takes 5 or more)", min=5
    )
    threshold_mb: float | None = _f(None, "files from this many MiB on go in parts", gt=0)
    mirror_queue: int = _f(
        1,
        "checkpoints waiting behind the one being mirrored; a newer one replaces the oldest",
        gt=0,
    )

    def transfer(self) -> Any:
        """These settings as :class:`gmpo_kfp.transfer.TransferSettings` (env and defaults)."""
        from gmpo_kfp.transfer import TransferSettings

        return TransferSettings.resolve(
            max_concurrency=self.max_concurrency,
            part_size_mb=self.part_size_mb,
            threshold_mb=self.threshold_mb,
        )


@dataclass
class MonitoringConfig(_Section):
    """Prometheus export of the training metrics (both engines, from the metrics file)."""

    _prefix: ClassVar[str] = "monitoring."
    metrics_port: int = _f(
        0, "serve /metrics on this port while training (0: off)", min=0, max=65535
    )
    metrics_host: str = _f(
        "0.0.0.0", "address the /metrics server binds (127.0.0.1: this host only)"
    )
    pushgateway: str = _f(
        "", "Pushgateway URL to push to ('': $GMPO_PUSHGATEWAY if set, else no push)"
    )
    push_every: int = _f(10, "push every N steps (and once at the end)", gt=0)
    pipeline: str = _f(PIPELINE_NAME, "the pipeline label of pushed metrics (a grouping key)")
    model: str = _f(
        "",
        "the model label of the series ('': the config's name); the pipeline sets its "
        "model_name, the label evaluation and registration push under",
    )


@dataclass
class LoraConfig(_Section):
    """LoRA: train low-rank adapters on a frozen base instead of every weight (PEFT).

    On the trl engine through ``peft`` (TRL's ``peft_config``), on verl through its own
    options (``actor_rollout_ref.model.lora_rank`` and its neighbours). The RL phase
    trains the adapters; the supervised warm-up (``sft.*``, the tiny model's start)
    still trains every weight. The final model is the base with the adapters merged
    in (what vLLM serves as it is), its adapters kept beside it in
    ``lora_adapter/`` (``gmpo registry`` can register those alone).
    """

    _prefix: ClassVar[str] = "lora."
    rank: int = _f(0, "adapter rank r (0: no LoRA, every weight trains; typical 8-64)", min=0)
    alpha: int = _f(16, "adapter scale: the update is multiplied by alpha / rank", gt=0)
    target_modules: list[str] = _f(
        ["all-linear"],
        "layers that get adapters: module names (q_proj, v_proj, ...) or all-linear "
        "(every linear layer but the output layer)",
    )
    dropout: float = _f(
        0.0, "dropout on the adapters' input (trl only: verl's FSDP LoRA has none)", min=0, max=0.9
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rank and not self.target_modules:
            raise ConfigError(
                "lora.target_modules is empty: name the layers to adapt (e.g. [q_proj, "
                "v_proj]) or use [all-linear]"
            )
        if "all-linear" in self.target_modules and len(self.target_modules) > 1:
            raise ConfigError(
                "lora.target_modules: all-linear already covers every linear layer; give "
                "either [all-linear] or a list of module names"
            )

    @property
    def enabled(self) -> bool:
        return self.rank > 0

    def targets(self) -> str | list[str]:
        """``target_modules`` as peft and verl take it: the string ``all-linear`` or names."""
        return "all-linear" if self.target_modules == ["all-linear"] else list(self.target_modules)


@dataclass
class SftConfig(_Section):
    """Optional supervised warm-up before RL: TRL's SFTTrainer on the answers of data.sft_files."""

    _prefix: ClassVar[str] = "sft."
    enabled: bool = _f(False, "run the warm-up before RL (trl engine only)")
    lr: float = _f(3e-3, "warm-up learning rate (constant, AdamW)", gt=0)
    batch_size: int = _f(128, "warm-up examples per optimiser step", gt=0)
    max_steps: int = _f(2000, "warm-up stops after this many steps at the latest", gt=0)
    target_pass_at_1: float = _f(
        0.2, "warm-up stops once greedy Pass@1 on the check prompts reaches this", gt=0, max=1
    )
    eval_every: int = _f(25, "check Pass@1 every N warm-up steps", gt=0)
    eval_every_near: int = _f(
        0,
        "once check Pass@1 reaches half the target, check every N steps instead, so the "
        "warm-up stops close to the target (0: keep eval_every)",
        min=0,
    )
    eval_prompts: int = _f(256, "check prompts, taken from the RL training data", gt=0)


@dataclass
class ResourcesConfig(_Section):
    _prefix: ClassVar[str] = "resources."
    nnodes: int = _f(1, "nodes (more than one: a KubeRay RayJob)", gt=0)
    gpus_per_node: int = _f(0, "GPUs per node (0: CPU)", min=0)


#: a Kubernetes object name that is also a label value (DNS-1123 label)
DNS_LABEL = (
    r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?",
    "a Kubernetes name: at most 63 lowercase letters, digits and '-', starting and ending "
    "with a letter or digit",
)


@dataclass
class KueueConfig(_Section):
    """Where Kueue queues the run: the RayJob and the pipeline's train and evaluate pods.

    With a ``queue`` the RayJob is created suspended and labelled, and Kueue admits it
    (all of its pods at once) when the queue's ClusterQueue has the quota; the KFP
    pods carry the same labels (``gmpo compile --queue``). Example queue and quota:
    ``manifests/overlays/production-kueue``.
    """

    _prefix: ClassVar[str] = "kueue."
    queue: str | None = _f(
        None, "Kueue LocalQueue in the run's namespace (None: no Kueue)", pattern=DNS_LABEL
    )
    priority_class: str | None = _f(
        None,
        "Kueue WorkloadPriorityClass of the run (None: the queue's default)",
        pattern=DNS_LABEL,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.priority_class and not self.queue:
            raise ConfigError(
                f"kueue.priority_class: {self.priority_class!r} needs kueue.queue (the "
                "LocalQueue the run goes to); set it or drop the priority class"
            )

    def labels(self) -> dict[str, str]:
        """The labels Kueue reads on a RayJob or a pod; none without a queue."""
        out = {KUEUE_QUEUE_LABEL: self.queue} if self.queue else {}
        if self.priority_class:
            out[KUEUE_PRIORITY_LABEL] = self.priority_class
        return out


@dataclass
class VerlConfig(_Section):
    _prefix: ClassVar[str] = "verl."
    device: str = _f(
        "auto",
        "where verl runs: gpu (vLLM rollouts, FSDP on CUDA), cpu (gloo, FSDP2, transformers "
        "rollouts: debug a recipe on a laptop), or auto (cpu on one node without a GPU)",
        choices=("auto", "gpu", "cpu"),
    )
    rollout_tensor_parallel: int = _f(1, "vLLM tensor-parallel size", gt=0)
    gpu_memory_utilization: float = _f(0.6, "vLLM share of GPU memory", gt=0, max=1)
    enable_chunked_prefill: bool | None = _f(None, "vLLM chunked prefill (None: verl's default)")
    max_num_batched_tokens: int | None = _f(None, "vLLM token budget per step", gt=0)
    actor_param_offload: bool = _f(False, "FSDP: offload actor parameters to CPU")
    actor_optimizer_offload: bool = _f(False, "FSDP: offload optimizer state to CPU")
    ref_param_offload: bool = _f(True, "FSDP: offload reference parameters to CPU")
    fsdp_size: int = _f(-1, "FSDP shard group size (-1: all GPUs)", min=-1)
    ulysses_sequence_parallel: int = _f(1, "Ulysses sequence-parallel size", gt=0)
    reward_manager: str = _f("naive", "verl reward manager", choices=("naive", "dapo", "prime"))
    reward_function: str = _f(
        "gmpo",
        "grader: gmpo (gmpo_kfp.reward, as the trl engine grades) or verl (default_compute_score)",
        choices=("gmpo", "verl"),
    )
    overlong_buffer_len: int = _f(0, "DAPO overlong penalty span in tokens (0: off)", min=0)
    overlong_penalty_factor: float = _f(1.0, "DAPO overlong penalty at the longest length", min=0)
    checkpoint_contents: list[str] = _f(
        ["model", "optimizer", "extra"], "what a checkpoint holds (checkpoint.save_contents)"
    )
    extra: list[str] = _f([], "further Hydra overrides, passed last and verbatim")


@dataclass
class TrainConfig:
    """Everything a training run needs; see each section's fields for their meaning."""

    name: str = _f("gmpo", "run name (experiment and checkpoint folders)")
    engine: str = _f("trl", "trl (one machine) or verl (Ray cluster)", choices=("trl", "verl"))
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "the policy"})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "training data"})
    algorithm: AlgorithmConfig = field(
        default_factory=AlgorithmConfig, metadata={"help": "loss, advantages and regularisers"}
    )
    rollout: RolloutConfig = field(default_factory=RolloutConfig, metadata={"help": "sampling"})
    optim: OptimConfig = field(default_factory=OptimConfig, metadata={"help": "optimiser"})
    batch: BatchConfig = field(default_factory=BatchConfig, metadata={"help": "batch sizes"})
    trainer: TrainerConfig = field(
        default_factory=TrainerConfig, metadata={"help": "length, checkpoints, validation"}
    )
    lora: LoraConfig = field(
        default_factory=LoraConfig, metadata={"help": "LoRA adapters (PEFT) instead of full tuning"}
    )
    sft: SftConfig = field(
        default_factory=SftConfig, metadata={"help": "optional supervised warm-up"}
    )
    resources: ResourcesConfig = field(
        default_factory=ResourcesConfig, metadata={"help": "nodes and GPUs"}
    )
    kueue: KueueConfig = field(
        default_factory=KueueConfig, metadata={"help": "Kueue queueing on a cluster"}
    )
    verl: VerlConfig = field(default_factory=VerlConfig, metadata={"help": "verl-only knobs"})
    monitoring: MonitoringConfig = field(
        default_factory=MonitoringConfig, metadata={"help": "Prometheus export"}
    )
    storage: StorageConfig = field(
        default_factory=StorageConfig, metadata={"help": "S3 transfers and mirroring"}
    )

    def __post_init__(self) -> None:
        _validate(self, "")
        if self.batch.mini_batch_size > self.batch.train_batch_size:
            raise ConfigError(
                f"batch.mini_batch_size ({self.batch.mini_batch_size}) exceeds "
                f"batch.train_batch_size ({self.batch.train_batch_size}): lower it or raise "
                "batch.train_batch_size"
            )
        if self.batch.train_batch_size % self.batch.mini_batch_size:
            raise ConfigError(
                f"batch.train_batch_size ({self.batch.train_batch_size}) must be a multiple of "
                f"batch.mini_batch_size ({self.batch.mini_batch_size})"
            )
        a = self.algorithm
        if self.model.moe and max(a.clip_ratio_low, a.clip_ratio_high) > MOE_MAX_CLIP:
            warnings.warn(
                f"model.moe is set and the clip ratio is above {MOE_MAX_CLIP} "
                f"({a.clip_ratio_low}/{a.clip_ratio_high}): the GMPO authors saw MoE runs "
                f"collapse at 0.4 and advise algorithm.clip_ratio_low/high={MOE_MAX_CLIP}",
                UserWarning,
                stacklevel=3,
            )


# --------------------------------------------------------------------------- validation


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Resolved field annotations, once per class (every construction validates with them)."""
    return typing.get_type_hints(cls)


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _type_name(tp: Any) -> str:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + " or null"
    if typing.get_origin(tp) is list:
        return f"a list of {_type_name(args[0])}"
    return _TYPE_NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints widen to float, nothing else."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")
    return float(value) if tp is float else value


def _validate(obj: Any, prefix: str) -> None:
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        value = getattr(obj, f.name)
        if _is_section(tp):
            if not isinstance(value, tp):
                raise ConfigError(f"{key} must be a mapping of its fields, got {value!r}")
            continue  # a section validated itself on construction
        value = _coerce(value, tp, key)
        object.__setattr__(obj, f.name, value)
        if value is None:
            continue
        _check_rules(value, f.metadata, key)


def _check_rules(value: Any, rules: Mapping[str, Any], key: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    if "choices" in rules and value not in rules["choices"]:
        raise ConfigError(f"{key} must be one of {', '.join(rules['choices'])}; got {value!r}")
    if "pattern" in rules and not re.fullmatch(rules["pattern"][0], value):
        raise ConfigError(f"{key} must be {rules['pattern'][1]}, got {value!r}")
    if "gt" in rules and not value > rules["gt"]:
        raise ConfigError(f"{key} must be > {rules['gt']}, got {value!r}")
    if "min" in rules and not value >= rules["min"]:
        raise ConfigError(f"{key} must be >= {rules['min']}, got {value!r}")
    if "max" in rules and not value <= rules["max"]:
        raise ConfigError(f"{key} must be <= {rules['max']}, got {value!r}")


# --------------------------------------------------------------------------- dict / YAML


def config_from_dict(data: Mapping[str, Any] | None) -> TrainConfig:
    """Build a config from nested mappings; unknown keys raise :class:`ConfigError`."""
    return _build(TrainConfig, data or {}, "")


def _build(cls: type, data: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "the config"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping of fields, got {data!r}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            known = ", ".join(sorted(names))
            shown = key if str(key).isprintable() else repr(key)  # one line, whatever the key
            raise ConfigError(f"unknown config key {prefix}{shown}; known keys here: {known}")
        tp = hints[key]
        kwargs[key] = _build(tp, value, f"{prefix}{key}.") if _is_section(tp) else value
    return cls(**kwargs)


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """The config as plain nested dicts (YAML-ready)."""
    return dataclasses.asdict(config)


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML config file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist: pass the path of a YAML config")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {p} is not valid YAML{at}: fix its syntax") from None
    return config_from_dict(data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], value); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not key=value: write e.g. optim.lr=1e-6")
    parts = key.strip().split(".")
    if any(not p for p in parts):
        raise ConfigError(f"override key {key!r} has an empty part: write e.g. optim.lr=1e-6")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _looks_numeric(value):
        value = float(value)  # YAML 1.1 reads 1e-6 as a string
    return parts, value


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip().lower() not in {"nan", "inf", "-inf", "+inf", "infinity", "-infinity"}


def apply_overrides(config: TrainConfig, overrides: Iterable[str]) -> TrainConfig:
    """Apply dotted ``key=value`` overrides (text, as a user types them) and validate."""
    data = config_to_dict(config)
    for text in overrides:
        parts, value = parse_override(text)
        _set_field(data, parts, value, f"override {text!r}")
    return config_from_dict(data)


def with_values(config: TrainConfig, values: Mapping[str, Any]) -> TrainConfig:
    """``config`` with dotted fields set to typed Python values, validated as on construction.

    What code changes in a config (paths, the engine, the model a warm-up made) goes
    through here: no ``key=value`` text is written only to be parsed again.
    """
    data = config_to_dict(config)
    for key, value in values.items():
        _set_field(data, key.split("."), value, f"field {key!r}")
    return config_from_dict(data)


def _set_field(data: dict[str, Any], parts: list[str], value: Any, where: str) -> None:
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or not isinstance(node.get(part), dict):
            dotted = ".".join(parts[: depth + 1])
            raise ConfigError(f"unknown config section {dotted} in {where}")
        node = node[part]
    if parts[-1] not in node:
        section = ".".join(parts[:-1]) or "the config"
        known = ", ".join(sorted(node))
        raise ConfigError(
            f"unknown config key {'.'.join(parts)} in {section}; known keys here: {known}"
        )
    if isinstance(node[parts[-1]], dict):
        raise ConfigError(f"{'.'.join(parts)} is a section: set one of its fields")
    node[parts[-1]] = value


def field_help() -> list[tuple[str, str, Any]]:
    """(dotted key, help, default) for every field, in declaration order."""
    rows: list[tuple[str, str, Any]] = []

    def walk(cls: type, prefix: str) -> None:
        hints = _hints(cls)
        defaults = cls()
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if _is_section(tp):
                walk(tp, f"{prefix}{f.name}.")
            else:
                rows.append((f"{prefix}{f.name}", f.metadata["help"], getattr(defaults, f.name)))

    walk(TrainConfig, "")
    return rows

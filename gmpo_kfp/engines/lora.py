"""LoRA on both engines: the adapter config, and the final model with its adapters merged.

The config section is :class:`gmpo_kfp.config.LoraConfig`. The trl engine hands
:func:`peft_config` to TRL (``peft_config=``), which wraps the policy with
``peft.get_peft_model``; verl builds its adapters from its own options
(:func:`gmpo_kfp.engines.verl.verl_override_map`). Either way the RL phase ends with a
model whose adapters are not yet part of its weights, and the final model directory
(:func:`save_merged` for TRL's model, :func:`merge_in_place` for what verl's model
merger writes) holds:

- the base weights with the adapters merged in, a plain Hugging Face model that
  vLLM and ``from_pretrained`` load as they are;
- :data:`ADAPTER_DIR`: the adapters alone (``adapter_config.json``,
  ``adapter_model.safetensors``), with the base model's name in
  ``base_model_name_or_path`` (what ``model.path`` named), as ``peft`` loads them.

:data:`ADAPTER_DIR` is the folder verl's model merger writes, so one layout serves both.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from gmpo_kfp.config import TrainConfig

#: the adapters' folder inside a final model directory (verl's model merger's name)
ADAPTER_DIR = "lora_adapter"
ADAPTER_CONFIG = "adapter_config.json"


def peft_config(config: TrainConfig) -> Any:
    """``lora.*`` as a ``peft.LoraConfig`` for a causal LM; ``None`` without LoRA."""
    lora = config.lora
    if not lora.enabled:
        return None
    from peft import LoraConfig, TaskType

    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=lora.rank,
        lora_alpha=lora.alpha,
        target_modules=lora.targets(),
        lora_dropout=lora.dropout,
        bias="none",
    )


def adapter_dir(model_dir: str | Path) -> Path | None:
    """The adapters' folder of a final model directory; ``None`` where it has none."""
    found = Path(model_dir) / ADAPTER_DIR
    return found if (found / ADAPTER_CONFIG).is_file() else None


def _keep(adapters: Path, staging: Path, base: str) -> None:
    """Copy ``adapters`` into a model folder being written, naming ``base`` as the model
    they apply to (``base_model_name_or_path``)."""
    kept = shutil.copytree(adapters, staging / ADAPTER_DIR)
    path = kept / ADAPTER_CONFIG
    data = json.loads(path.read_text())
    data["base_model_name_or_path"] = base
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_merged(peft_model: Any, tokenizer: Any, target: Path, *, base: str) -> Path:
    """Write ``peft_model`` to ``target``: adapters merged into the weights, and kept apart.

    ``base``: the name of the model the adapters were trained on. The merge changes
    ``peft_model``'s weights in place (it is the last thing a run does with them).
    """
    from gmpo_kfp.evaluation.models import save_model_dir

    with tempfile.TemporaryDirectory(prefix=".adapter.", dir=target.parent) as tmp:
        peft_model.save_pretrained(tmp)
        merged = peft_model.merge_and_unload()
        return save_model_dir(
            merged, tokenizer, target, extra=lambda staging: _keep(Path(tmp), staging, base)
        )


def merge_in_place(model_dir: Path, *, base: str) -> bool:
    """Merge the adapters that verl's model merger left beside the base weights.

    verl's merger writes the base weights unchanged plus :data:`ADAPTER_DIR`; this
    loads both, merges, and rewrites ``model_dir`` (atomically). ``False`` when the
    directory has no adapters (a full fine-tune): nothing to do.
    """
    adapters = adapter_dir(model_dir)
    if adapters is None:
        return False
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from gmpo_kfp.evaluation.models import load_tokenizer, save_model_dir

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    merged = PeftModel.from_pretrained(model, adapters).merge_and_unload()
    # model_dir is replaced only after the new folder is whole: its adapters are read first
    save_model_dir(
        merged,
        load_tokenizer(str(model_dir)),
        model_dir,
        extra=lambda staging: _keep(adapters, staging, base),
    )
    return True

"""Training presets as data: one YAML file per recipe, loaded into :class:`TrainConfig`.

- ``gmpo-qwen2.5-7b-math``: verl's GMPO quick start (``run_qwen2_5-7b_math.sh``).
- ``gmpo-qwen3-8b-math``: verl's GMPO example of today (``run_qwen3_8b_fsdp.sh``).
- ``gmpo-dapo-qwen2.5-7b-math``: GMPO + DAPO on Qwen2.5-Math-7B (``test_dapo_7b_math.sh``).
- ``gmpo-dapo-qwen3-30b-a3b-math``: GMPO + DAPO on the Qwen3-30B-A3B MoE model, at the
  README's advised clip 0.2 / 0.2 (the script used 0.4).
- ``paper-qwen2.5-math-7b``: the paper's own recipe (MATH levels 3-5, n 8, batch 128).
- ``tiny-cpu``: the local default, a tiny model on a laptop CPU.
- ``smollm2-135m-cpu``: a real pretrained LLM (SmolLM2-135M-Instruct, shipped on PyPI)
  on a laptop CPU: format warm-up, then GMPO on the arithmetic task.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from gmpo_kfp.config import ConfigError, TrainConfig, config_from_dict

PRESET_DIR = Path(__file__).resolve().parent

#: The preset a local run uses when none is named.
DEFAULT_PRESET = "tiny-cpu"


def preset_names() -> list[str]:
    """Every preset's name, sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    """The YAML file of preset ``name``; an unknown name lists the known ones."""
    path = PRESET_DIR / f"{name}.yaml"
    if "/" in name or not path.is_file():
        raise ConfigError(
            f"unknown preset {name!r}; known presets: {', '.join(preset_names())} "
            "(gmpo presets list)"
        )
    return path


def preset_text(name: str) -> str:
    """The preset's YAML as written, comments included."""
    return preset_path(name).read_text()


def preset_summary(name: str) -> str:
    """The first comment line of the preset file."""
    for line in preset_text(name).splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def load_preset(name: str) -> TrainConfig:
    """The preset as a validated config."""
    return config_from_dict(yaml.safe_load(preset_text(name)))

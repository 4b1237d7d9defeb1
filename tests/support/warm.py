"""A warmed-up tiny model, for tests that need GMPO to learn something in a few steps.

The random tiny model answers no arithmetic problem, so every reward, advantage and
gradient is 0. A short supervised warm-up (TRL's SFTTrainer, as ``sft.*`` runs it) until
it answers a few: what the LoRA tests on both engines start from.
"""

from __future__ import annotations

from pathlib import Path

from gmpo_kfp.config import config_from_dict
from gmpo_kfp.data.arithmetic import arithmetic_rows
from gmpo_kfp.data.schema import write_rl_parquet


def short_warm_up(
    root: Path, *, base: Path | None = None, target: float = 0.1, max_steps: int = 800
) -> Path:
    """Warm ``base`` (default: a new tiny model) up under ``root`` until check Pass@1
    reaches ``target`` or ``max_steps`` pass; returns the model directory."""
    from gmpo_kfp.engines.trl import warm_up
    from gmpo_kfp.evaluation.models import build_tiny_model

    sft = write_rl_parquet(arithmetic_rows("warmup", limit=2048), root / "sft.parquet")
    check = write_rl_parquet(arithmetic_rows("train", limit=256), root / "train.parquet")
    config = config_from_dict(
        {
            "data": {
                "sft_files": [str(sft)],
                "train_files": [str(check)],
                "max_prompt_length": 16,
                "max_response_length": 4,
            },
            "sft": {
                "enabled": True,
                "max_steps": max_steps,
                "target_pass_at_1": target,
                "eval_every": 20,
                "eval_every_near": 5,
                "eval_prompts": 256,
            },
            "trainer": {"seed": 3, "output_dir": str(root / "run")},
        }
    )
    model = root / "model"
    warm_up(config, str(base or build_tiny_model(root / "tiny")), model, progress=False)
    return model


def weak_and_warm(root: Path, *, target: float = 0.1) -> tuple[Path, Path]:
    """Two models of known order of quality under ``root``: the tiny model warmed to check
    Pass@1 ``target / 2``, and from there on to ``target`` (what the LoRA tests, the
    promotion test and ``benchmarks/lora.py`` start from)."""
    weak = short_warm_up(root / "weak", target=target / 2)
    return weak, short_warm_up(root / "warm", base=weak, target=target)

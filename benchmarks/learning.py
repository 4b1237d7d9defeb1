"""The tiny model learns: held-out greedy Pass@1 before and after GMPO, end to end, per seed.

Runs ``gmpo_kfp.train`` on the ``tiny-cpu`` preset (build the tiny model, generate the
arithmetic task, supervised warm-up to Pass@1 ~0.2, GMPO, validation on the 2000
held-out problems) for each seed, and reports wall time and Pass@1 before and after,
the default seed first, then the spread over all seeds.

    python benchmarks/learning.py [--seeds 1,0,2] [--losses gmpo] [--set k=v ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path


def one_run(loss: str, seed: int, out: Path, sets: list[str]) -> dict:
    from gmpo_kfp.config import apply_overrides, with_values
    from gmpo_kfp.engines.training import train
    from gmpo_kfp.presets import load_preset

    config = with_values(
        load_preset("tiny-cpu"),
        {
            "algorithm.loss": loss,
            "trainer.seed": seed,
            "trainer.output_dir": str(out),
            "trainer.save_freq": -1,
            "trainer.resume": "disable",
        },
    )
    config = apply_overrides(config, sets)  # the user's --set text, parsed once
    start = time.perf_counter()
    result = train(config, progress=False)
    wall = time.perf_counter() - start
    return {
        "loss": loss,
        "seed": seed,
        "wall_s": round(wall, 1),
        "warmup_steps": result.sft["steps"] if result.sft else 0,
        "rl_steps": result.steps,
        "pass_at_1_before": result.pass_at_1_before,
        "pass_at_1_after": result.pass_at_1_after,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="1,0,2", help="comma-separated; the first is the default")
    ap.add_argument("--losses", default="gmpo")
    ap.add_argument("--set", action="append", default=[], help="config override (repeatable)")
    ap.add_argument("--json", help="also write the results as JSON to this file")
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="gmpo-learning-"))
    runs = []
    for loss in a.losses.split(","):
        for seed in (int(s) for s in a.seeds.split(",")):
            run = one_run(loss, seed, work / f"{loss}-{seed}", a.set)
            print(json.dumps(run), file=sys.stderr, flush=True)
            runs.append(run)
    print("| loss | seed | wall (s) | warm-up steps | RL steps | Pass@1 before | Pass@1 after |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        print(
            f"| {r['loss']} | {r['seed']} | {r['wall_s']} | {r['warmup_steps']} | {r['rl_steps']} "
            f"| {r['pass_at_1_before']:.3f} | {r['pass_at_1_after']:.3f} |"
        )
    for loss in a.losses.split(","):
        after = [r["pass_at_1_after"] for r in runs if r["loss"] == loss]
        if len(after) > 1:
            print(
                f"\n{loss}: Pass@1 after, mean {statistics.mean(after):.3f}, "
                f"min {min(after):.3f}, max {max(after):.3f} over {len(after)} seeds"
            )
    if a.json:
        Path(a.json).write_text(json.dumps({"runs": runs, "machine": platform.machine()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""LoRA against a full fine-tune of the same budget: held-out Pass@1 and RL time, per seed.

From one warmed-up tiny model (``tests/support/warm.py``, as test_lora's fixture: a short
supervised warm-up to check Pass@1 half ``--warm-target``, then on to it), the same GMPO
steps of the ``tiny-cpu`` recipe run twice per seed, alternating: a full fine-tune
(``--full-set``, test_learning's setting by default) and LoRA (``--lora-set``,
test_lora's: rank 16, alpha 32, lr 5e-4, no weight decay), each validated on ``--val``
held-out problems before and after.

    python benchmarks/lora.py [--seeds 1,0,2] [--steps 800] [--json OUT]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FULL = ["optim.lr=7e-4", "optim.weight_decay=1.0"]
LORA = ["optim.lr=5e-4", "optim.weight_decay=0.0", "lora.rank=16", "lora.alpha=32"]


def one_run(model: Path, val: Path, seed: int, steps: int, sets: list[str], out: Path) -> dict:
    from gmpo_kfp.config import apply_overrides
    from gmpo_kfp.engines.training import train
    from gmpo_kfp.presets import load_preset

    config = apply_overrides(
        load_preset("tiny-cpu"),
        [
            f"trainer.output_dir={out}",
            f"model.path={model}",
            "sft.enabled=false",
            f"data.val_files={val}",
            f"trainer.total_steps={steps}",
            f"trainer.test_freq={steps}",
            "trainer.save_freq=-1",
            "trainer.resume=disable",
            "optim.warmup_steps=50",
            f"trainer.seed={seed}",
            *sets,
        ],
    )
    start = time.perf_counter()
    result = train(config, progress=False)
    return {
        "seed": seed,
        "rl_s": round(result.seconds, 1),
        "wall_s": round(time.perf_counter() - start, 1),
        "pass_at_1_before": result.pass_at_1_before,
        "pass_at_1_after": result.pass_at_1_after,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="1,0,2")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--val", type=int, default=500, help="held-out problems")
    ap.add_argument("--warm-target", type=float, default=0.1)
    ap.add_argument("--full-set", action="append", help="override of the full run (repeatable)")
    ap.add_argument("--lora-set", action="append", help="override of the LoRA run (repeatable)")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args(argv)

    from gmpo_kfp.data.arithmetic import arithmetic_rows
    from gmpo_kfp.data.schema import write_rl_parquet
    from tests.support.warm import weak_and_warm

    sides = {"full": a.full_set or FULL, "lora": a.lora_set or LORA}
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="gmpo-lora-bench-") as tmp:
        work = Path(tmp)
        _, model = weak_and_warm(work, target=a.warm_target)  # test_lora's start
        val = write_rl_parquet(arithmetic_rows("test", limit=a.val), work / "val.parquet")
        for seed in (int(s) for s in a.seeds.split(",")):
            for name, sets in sides.items():
                got = one_run(model, val, seed, a.steps, sets, work / f"{name}-{seed}")
                runs[name].append(got)
                print(f"{name}: {json.dumps(got)}", file=sys.stderr, flush=True)
    print(f"| side | settings | seed | RL (s) | Pass@1 before | after ({a.steps} steps) |")
    print("|---|---|---|---|---|---|")
    for name, rows in runs.items():
        for r in rows:
            print(
                f"| {name} | {' '.join(sides[name])} | {r['seed']} | {r['rl_s']} "
                f"| {r['pass_at_1_before']:.3f} | {r['pass_at_1_after']:.3f} |"
            )
    summary = {
        name: {
            "mean_after": statistics.mean(r["pass_at_1_after"] for r in rows),
            "min_after": min(r["pass_at_1_after"] for r in rows),
            "median_rl_s": statistics.median(r["rl_s"] for r in rows),
        }
        for name, rows in runs.items()
    }
    for name, s in summary.items():
        print(
            f"\n{name}: Pass@1 after, mean {s['mean_after']:.3f}, min {s['min_after']:.3f}; "
            f"RL median {s['median_rl_s']:.1f} s"
        )
    ratio = summary["lora"]["median_rl_s"] / summary["full"]["median_rl_s"]
    print(f"LoRA's RL time: {ratio:.2f}x the full fine-tune's")
    if a.json:
        body = {"runs": runs, "sides": sides, "summary": summary, "machine": platform.machine()}
        Path(a.json).write_text(json.dumps(body, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

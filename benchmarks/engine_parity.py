"""The same GMPO run on both engines, side by side; and our verl launcher against a bare one.

1. Parity: one warmed-up tiny model (the shared supervised warm-up, run once), then
   ``--steps`` GMPO steps of the ``tiny-cpu`` recipe (constant lr: verl has no linear
   schedule) on TRL and on verl (on this CPU), from the same weights, data and seed.
   Per engine: validation Pass@1 before and after, the reward curve (mean score per
   tenth of the run), median step time, start-up (wall time not spent in steps).
2. Overhead: ``train()`` on the verl engine (staging, the metrics follower, the
   checkpoint mirror, the merge) against a bare ``python -m verl.trainer.main_ppo`` with
   the same overrides and environment, ``--overhead-steps`` steps each, alternating;
   the ratio of wall times (target <= 1.02).

    python benchmarks/engine_parity.py [--steps 200] [--overhead-steps 4] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gmpo_kfp import metrics as M
from gmpo_kfp.config import TrainConfig, apply_overrides, with_values
from gmpo_kfp.presets import load_preset


def base_config(out: Path, steps: int, *sets: str) -> TrainConfig:
    return apply_overrides(
        load_preset("tiny-cpu"),
        [
            f"trainer.output_dir={out}",
            f"trainer.total_steps={steps}",
            f"trainer.test_freq={steps}",
            f"trainer.save_freq={steps}",
            "optim.lr_schedule=constant",
            "optim.warmup_steps=0",
            "trainer.resume=disable",
            *sets,
        ],
    )


def warmed_model(root: Path) -> Path:
    from gmpo_kfp.engines.training import materialise_task
    from gmpo_kfp.engines.trl import warm_up
    from gmpo_kfp.evaluation.models import resolve_model_path

    config = materialise_task(base_config(root / "warm", 1))
    target = root / "warm" / "sft-model"
    warm_up(config, resolve_model_path("tiny", root / "warm"), target, progress=False)
    return target


def curve(records: list[dict], parts: int = 10) -> list[float]:
    scores = [r["data"][M.SCORE_MEAN] for r in records if M.SCORE_MEAN in r["data"]]
    size = max(1, len(scores) // parts)
    return [round(statistics.mean(scores[i : i + size]), 3) for i in range(0, len(scores), size)]


def step_seconds(records: list[dict], engine: str) -> list[float]:
    key = "timing_s/step" if engine == "verl" else M.TIME_PER_STEP
    return [r["data"][key] for r in records if key in r["data"] and r["step"] > 0]


def one_engine(engine: str, warm: Path, root: Path, steps: int) -> dict:
    from gmpo_kfp.engines.training import train

    out = root / engine
    config = with_values(
        base_config(out, steps), {"engine": engine, "model.path": str(warm), "sft.enabled": False}
    )
    start = time.perf_counter()
    result = train(config, progress=False)
    wall = time.perf_counter() - start
    records = list(M.read_metrics(result.metrics_file))
    times = step_seconds(records, engine)
    return {
        "engine": engine,
        "steps": result.steps,
        "wall_s": round(wall, 1),
        "step_s": round(statistics.median(times), 3),
        "startup_s": round(wall - sum(times), 1),
        "pass_at_1_before": result.pass_at_1_before,
        "pass_at_1_after": result.pass_at_1_after,
        "reward_curve": curve(records),
    }


def overhead(warm: Path, root: Path, steps: int, rounds: int) -> dict:
    from gmpo_kfp.engines.training import materialise_task, train
    from gmpo_kfp.engines.verl import verl_command
    from gmpo_kfp.in_verl import cpu as verl_cpu

    ours_s, bare_s = [], []
    for i in range(rounds):
        out = root / f"bare{i}"
        config = materialise_task(
            with_values(
                base_config(out, steps),
                {"engine": "verl", "model.path": str(warm), "sft.enabled": False},
            )
        )
        env = {
            **os.environ,
            **verl_cpu.environment(),
            "VERL_FILE_LOGGER_PATH": str(out / "metrics.jsonl"),
        }
        start = time.perf_counter()
        subprocess.run(
            verl_command(config, python=sys.executable, device="cpu"),
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        bare_s.append(time.perf_counter() - start)
        ours_config = with_values(config, {"trainer.output_dir": str(root / f"ours{i}")})
        start = time.perf_counter()
        train(ours_config, progress=False, output_uri=str(root / f"mirror{i}"))
        ours_s.append(time.perf_counter() - start)
    return {
        "steps": steps,
        "bare_s": [round(s, 1) for s in bare_s],
        "ours_s": [round(s, 1) for s in ours_s],
        "ratio": round(statistics.median(ours_s) / statistics.median(bare_s), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--overhead-steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gmpo-parity-") as tmp:
        root = Path(tmp)
        print("warm-up (shared by both engines) ...", file=sys.stderr, flush=True)
        warm = warmed_model(root)
        runs = []
        for engine in ("trl", "verl"):
            print(f"{engine}: {args.steps} steps ...", file=sys.stderr, flush=True)
            runs.append(one_engine(engine, warm, root, args.steps))
        print("overhead: ours vs bare main_ppo ...", file=sys.stderr, flush=True)
        over = overhead(warm, root, args.overhead_steps, args.rounds)
    result = {
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "runs": runs,
        "overhead": over,
    }
    print("| engine | steps | Pass@1 before | after | step s | start-up s | reward curve |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        print(
            f"| {r['engine']} | {r['steps']} | {r['pass_at_1_before']:.3f} | "
            f"{r['pass_at_1_after']:.3f} | {r['step_s']} | {r['startup_s']} | "
            f"{' '.join(str(v) for v in r['reward_curve'])} |"
        )
    print(
        f"\nverl launcher overhead: ours {over['ours_s']} s vs bare {over['bare_s']} s "
        f"({over['steps']} steps): {over['ratio']}x"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

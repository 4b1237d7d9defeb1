"""benchmarks/run_all: executable, refuses an unknown benchmark, tabulates every kind."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

RUN_ALL = Path(__file__).resolve().parents[2] / "benchmarks" / "run_all"


def load_run_all():
    loader = importlib.machinery.SourceFileLoader("run_all", str(RUN_ALL))
    spec = importlib.util.spec_from_loader("run_all", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_run_all_is_executable_and_every_benchmark_exists():
    assert os.access(RUN_ALL, os.X_OK)
    assert RUN_ALL.read_text().startswith("#!/usr/bin/env python3\n")
    for name in load_run_all().BENCHMARKS:
        assert (RUN_ALL.parent / f"{name}.py").is_file(), name


def test_unknown_benchmark_is_one_line_and_exit_2(tmp_path):
    out = subprocess.run(
        [sys.executable, str(RUN_ALL), "--only", "objective,nope", "--output", str(tmp_path / "r")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "--only" in out.stderr and "nope" in out.stderr
    assert not list(tmp_path.iterdir())


def test_markdown_has_a_row_per_measurement_and_the_machine():
    run_all = load_run_all()
    results = [
        {
            "name": "objective",
            "ok": True,
            "result": {
                "rows": [
                    {
                        "dtype": d,
                        "shape": [2, 3],
                        "verl_geo_mean_ms": 2.0,
                        "gmpo_kfp_ms": 1.0,
                        "ratio": 0.5,
                        "bound_ms": 0.25,
                        "gmpo_kfp_x_bound": 4.0,
                        "compiled_ms": 0.5,
                        "compiled_x_bound": 2.0,
                        "compile_s": 3.0,
                    }
                    for d in ("float32", "bfloat16")
                ]
            },
        },
        {
            "name": "engine",
            "ok": True,
            "result": {"bare_trl_s_per_step": 0.5, "gmpo_kfp_s_per_step": 0.5, "ratio": 1.0},
        },
        {
            "name": "evaluation",
            "ok": True,
            "result": {
                "problems": 10,
                "bare_problems_per_s": 9.0,
                "gmpo_kfp_problems_per_s": 8.0,
                "ratio": 0.889,
            },
        },
        {"name": "local_run", "ok": True, "result": {"wall_s": 150.0, "target_s": 300}},
        {"name": "engine", "ok": False, "error": "boom"},
    ]
    text = run_all.markdown(results, {"cpu": "x86_64", "cpus": 2, "gpu": None})
    lines = text.splitlines()
    assert lines[0] == "| benchmark | measured | figures | ratio |"
    assert (
        "| objective (bfloat16, 2x3) | GMPO loss fwd+bwd, ms "
        "| verl 2.0 / ours 1.0 (memory bound 0.25: ours 4.0x; compiled 0.5, 2.0x) | 0.50x |"
        in lines
    )
    assert any(line.startswith("| evaluation |") and "0.89x" in line for line in lines)
    assert any("0.50x of target" in line for line in lines)
    assert "| engine | failed | boom | - |" in lines
    assert "cpu x86_64, cpus 2" in text and "gpu" not in text


def test_objective_benchmark_measures_both_losses_against_the_copy_bound(tmp_path):
    out = tmp_path / "objective.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(RUN_ALL.parent / "objective.py"),
            "--batch",
            "8",
            "--tokens",
            "64",
            "--repeats",
            "2",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["dtype"] for r in rows] == ["float32", "bfloat16"]
    for r in rows:
        assert r["bound_ms"] > 0 and r["gmpo_kfp_ms"] > 0 and r["verl_geo_mean_ms"] > 0
        assert r["gmpo_kfp_x_bound"] > 1  # no loss beats a copy of its bytes
        assert r["compiled_ms"] > 0 and r["compiled_x_bound"] > 1 and r["compile_s"] > 0
    assert "ours / bound" in proc.stdout


def test_local_run_breakdown_splits_the_train_stage_into_its_parts():
    loader = importlib.machinery.SourceFileLoader("local_run", str(RUN_ALL.parent / "local_run.py"))
    spec = importlib.util.spec_from_loader("local_run", loader)
    local_run = importlib.util.module_from_spec(spec)
    loader.exec_module(local_run)
    run = {
        "stage_seconds": {"prepare-data": 1.0, "train": 100.0, "evaluate": 7.0},
        "train_seconds": {
            "model_build": 1.0,
            "warmup": 30.0,
            "rl": 60.0,
            "generation": 20.0,
            "validation": 5.0,
            "update": 35.0,
        },
    }
    rows = dict(local_run.breakdown(run))
    assert rows["train"] == 100.0 and rows["  warmup"] == 30.0 and rows["  update"] == 35.0
    assert rows["  rest: start-up, imports, data, uploads"] == 9.0  # 100 - (1 + 30 + 60)
    assert list(rows) == [
        "prepare-data",
        "train",
        *(r for r in rows if r.startswith("  ")),
        "evaluate",
    ]

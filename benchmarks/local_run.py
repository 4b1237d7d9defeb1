"""Cold local pipeline run: ``gmpo run --local`` in a fresh process and a fresh output folder.

Measures the whole thing a newcomer waits for after installing: the tiny model is
built, the task generated, the pipeline's four steps run through kfp.local (each
in its own process), and the summary printed. Target: <= 5 minutes on 2 cores.
It prints where the time went: each stage's wall time, the train stage's parts
(model build, warm-up, RL generation, update, validation, the rest: start-up,
imports, data, uploads) and what importing the libraries costs a fresh process.

``--against DIR`` runs another checkout's code too, alternating with this one for
``--rounds`` rounds: a checkout (a folder with ``pyproject.toml``) is installed first
into a temporary folder of its own (``pip install --no-deps --target``: its packages
laid out as it ships them, so this checkout's editable install cannot lend it a
``pipelines`` or ``components`` of another layout), any other folder is put first on
PYTHONPATH as it is (it holds a ``gmpo_kfp``); it prints both breakdowns side by
side with the ratio of their median wall times. Every run starts in an empty folder:
``python -m`` puts the working directory first on ``sys.path`` (in the driver and in
each kfp.local task), so a checkout there would shadow the side's code; each side
prints the ``gmpo_kfp`` it ran.

    python benchmarks/local_run.py [--json OUT] [--against DIR] [--rounds 2] [-- gmpo run args]
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

#: Library imports a task pays in a fresh process, each on top of the ones before.
IMPORTS = ("torch", "transformers", "trl", "kfp")


def summary(stdout: str) -> str:
    """The closing summary of ``gmpo run --local`` (kfp.local's task logs come before it)."""
    lines = stdout.strip().splitlines()
    start = max((i for i, line in enumerate(lines) if line.startswith("output ")), default=0)
    return "\n".join(lines[start:])


def one_run(extra: list[str], pythonpath: str | None = None) -> dict:
    """One cold ``gmpo run --local``: its wall time, summary and run-summary.json."""
    home = Path(tempfile.mkdtemp(prefix="gmpo-local-run-"))
    out = home / "out"
    cmd = [sys.executable, "-m", "gmpo_kfp", "run", "--local", "--output", str(out), *extra]
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    code = subprocess.run(
        [sys.executable, "-c", "import gmpo_kfp; print(gmpo_kfp.__path__[0])"],
        capture_output=True,
        text=True,
        env=env,
        cwd=home,
        check=True,
    ).stdout.strip()
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=home)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(proc.returncode)
    saved = out / "run-summary.json"
    run = json.loads(saved.read_text()) if saved.is_file() else {}
    # the console a user reads (stages, our progress lines) is stderr
    return {
        "wall_s": round(wall, 1),
        "code": code,
        "summary": summary(proc.stdout),
        "run": run,
        "console": proc.stderr,
    }


def import_seconds() -> dict[str, float]:
    """Seconds a fresh interpreter takes to import each of :data:`IMPORTS` (cumulative)."""
    base = _python_seconds("pass")
    spent, done = {}, []
    for name in IMPORTS:
        done.append(name)
        spent[name] = round(_python_seconds("import " + ", ".join(done)) - base, 2)
    return {"python": round(base, 2), **spent}


def _python_seconds(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - start


def breakdown(run: dict) -> list[tuple[str, float]]:
    """(part, seconds) rows: each stage, and inside train its parts and the rest."""
    rows: list[tuple[str, float]] = []
    stages = run.get("stage_seconds", {})
    parts = run.get("train_seconds", {})
    for stage, seconds in stages.items():
        rows.append((stage, seconds))
        if stage == "train" and parts:
            inside = parts.get("model_build", 0) + parts.get("warmup", 0) + parts.get("rl", 0)
            for name in ("model_build", "warmup", "generation", "update", "validation"):
                if name in parts:
                    rows.append((f"  {name}", parts[name]))
            rows.append(("  rest: start-up, imports, data, uploads", max(0.0, seconds - inside)))
    return rows


def installed(folder: str) -> str:
    """The PYTHONPATH folder that runs ``folder``'s code (see the module docstring)."""
    if not (Path(folder) / "pyproject.toml").is_file():
        return folder
    target = tempfile.mkdtemp(prefix="gmpo-against-")
    print(f"installing {folder} into {target}", flush=True)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "--target", target, folder], check=True)
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the result as JSON to this file")
    ap.add_argument("--against", help="another checkout (or PYTHONPATH folder), run alternately")
    ap.add_argument("--rounds", type=int, default=1, help="runs of each side (default 1)")
    ap.add_argument("extra", nargs="*", help="further arguments for gmpo run")
    a = ap.parse_args(argv)
    sides = {"this": None, **({"against": installed(a.against)} if a.against else {})}
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    for i in range(a.rounds):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        for name in order:
            run = one_run(a.extra, sides[name])
            runs[name].append(run)
            print(
                f"round {i + 1}: {name} {run['wall_s']:.0f} s ({run['code']})",
                file=sys.stderr,
                flush=True,
            )
    ours = runs["this"][-1]
    print(ours["summary"])
    theirs_parts = breakdown(runs["against"][-1]["run"]) if a.against else None
    if theirs_parts is None:
        print("\n| part | seconds |\n|---|---|")
    else:
        print("\n| part | this (s) | against (s) |\n|---|---|---|")
    theirs_by_part = dict(theirs_parts or [])
    for part, seconds in breakdown(ours["run"]):
        cells = [f"{seconds:.1f}"]
        if theirs_parts is not None:
            other = theirs_by_part.get(part)
            cells.append("" if other is None else f"{other:.1f}")
        print(f"| {part} | {' | '.join(cells)} |")
    imports = import_seconds()
    print(
        "\nfresh-process imports (cumulative s): "
        + ", ".join(f"{k} {v}" for k, v in imports.items())
    )
    wall = statistics.median(r["wall_s"] for r in runs["this"])
    result = {
        "benchmark": "cold local pipeline run",
        "wall_s": round(wall, 1),
        "target_s": 300,
        "summary": ours["summary"],
        "breakdown": breakdown(ours["run"]),
        "imports_s": imports,
        "console": ours["console"],
        "machine": platform.machine(),
        "runs": {k: [r["wall_s"] for r in v] for k, v in runs.items()},
        "code": {k: v[-1]["code"] for k, v in runs.items()},
    }
    print(f"cold local run: {wall:.0f} s (target <= 300 s)")
    if a.against:
        theirs = statistics.median(r["wall_s"] for r in runs["against"])
        result["against_wall_s"] = round(theirs, 1)
        result["ratio"] = round(wall / theirs, 3)
        result["against_breakdown"] = theirs_parts
        print(f"against {a.against}: {theirs:.0f} s; this / that = {wall / theirs:.2f}x")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

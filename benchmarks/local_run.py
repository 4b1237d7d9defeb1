"""Cold local pipeline run: ``gmpo run --local`` in a fresh process and a fresh output folder.

Measures the whole thing a newcomer waits for after installing: the tiny model is
built, the task generated, the pipeline's four steps run through kfp.local (each
in its own process), and the summary printed. Target: <= 5 minutes on 2 cores.

    python benchmarks/local_run.py [--json OUT] [-- extra gmpo run arguments]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def summary(stdout: str) -> str:
    """The closing summary of ``gmpo run --local`` (kfp.local's task logs come before it)."""
    lines = stdout.strip().splitlines()
    start = max((i for i, line in enumerate(lines) if line.startswith("output ")), default=0)
    return "\n".join(lines[start:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the result as JSON to this file")
    ap.add_argument("extra", nargs="*", help="further arguments for gmpo run")
    a = ap.parse_args(argv)
    out = Path(tempfile.mkdtemp(prefix="gmpo-local-run-")) / "out"
    cmd = [sys.executable, "-m", "gmpo_kfp", "run", "--local", "--output", str(out), *a.extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return proc.returncode
    print(summary(proc.stdout))
    result = {
        "benchmark": "cold local pipeline run",
        "wall_s": round(wall, 1),
        "target_s": 300,
        "summary": summary(proc.stdout),
        "machine": platform.machine(),
    }
    print(f"cold local run: {wall:.0f} s (target <= 300 s)")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The pipeline through kfp.local with each runner, side by side: subprocess against docker.

Both run the same pipeline (prepare, train, evaluate, register) with the same
overrides; ``docker`` runs each step in its CPU image (``gmpo images build --variant
cpu`` first, with ``DOCKER_HOST`` set; ``--daemon`` starts a private ``dockerd`` on the
test suite's cache instead). Alternating ``--repeats`` times; prints each wall time,
Pass@1 and the ratio docker / subprocess of the median wall times.

    python benchmarks/container_runner.py [--repeats 1] [--full] [--daemon] [--json OUT]

Without ``--full``: the test suite's short run (warm-up to Pass@1 0.1, three GMPO
steps); with it, the ``tiny-cpu`` default (``gmpo run --local``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from gmpo_kfp.settings import cache_root
from gmpo_kfp.workflow.kfp_runs import SMOKE_OVERRIDES, run_local


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--full", action="store_true", help="the tiny-cpu default run")
    parser.add_argument("--daemon", action="store_true", help="start a private dockerd")
    parser.add_argument("--json")
    args = parser.parse_args()
    daemon = None
    if args.daemon:
        from gmpo_kfp.containers.engine import PrivateDaemon

        cache = cache_root()
        daemon = PrivateDaemon(cache / "docker").start()
        os.environ["DOCKER_HOST"] = daemon.docker.host
    overrides = [] if args.full else list(SMOKE_OVERRIDES)
    params = [] if args.full else ["threshold=0.0"]
    rows: dict[str, list[dict]] = {"subprocess": [], "docker": []}
    try:
        for i in range(args.repeats):
            for runner in rows:
                with tempfile.TemporaryDirectory(prefix=f"gmpo-bench-{runner}-") as tmp:
                    r = run_local(
                        Path(tmp) / "out", overrides=overrides, params=params, runner=runner
                    )
                rows[runner].append({"seconds": r.seconds, "pass_at_1": r.pass_at_1})
                print(f"{runner:10s} run {i + 1}: {r.seconds:6.1f} s, Pass@1 {r.pass_at_1:.3f}")
    finally:
        if daemon:
            daemon.stop()
    med = {k: statistics.median(x["seconds"] for x in v) for k, v in rows.items()}
    ratio = med["docker"] / med["subprocess"]
    print(f"median wall time: subprocess {med['subprocess']:.1f} s, docker {med['docker']:.1f} s")
    print(f"ratio docker / subprocess: {ratio:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": rows, "median_s": med, "ratio": ratio}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

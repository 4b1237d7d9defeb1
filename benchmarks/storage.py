"""Checkpoint storage at scale: transfers through a shaped S3, and mirroring against training.

Nothing here reaches a real S3, so it simulates one: moto_server on loopback behind
tests/support/faulty_proxy.py with a per-connection bandwidth cap (``--rate-mb``,
default 20 MB/s, one stream of a real S3) and a round trip (``--delay-ms``, 20 ms).
The server and the proxy run at Linux's SCHED_IDLE priority, and the server keeps its
objects in memory: they stand in for machines elsewhere, and on a 2-core laptop they
would otherwise take the CPU and the disk that the client (and in ``--step-time`` the
training) has.

1. **Transfers** (default): a checkpoint-shaped folder (``--size-mb``, about 1 GiB:
   four shards and 64 small files) pushed (``push_dir``) and fetched back
   (``fetch_dir``, every file checked against its SHA-256), by another checkout's
   code (``--against``: a folder holding ``gmpo_kfp`` or a git revision of this
   repository) and by this one, alternating, each in a fresh process; the ratio of
   their times. Target: at least 4x both ways at 8 concurrent parts.
2. **Step time** (``--step-time``): RL on the TRL engine (tiny model) with a large
   synthetic file in every checkpoint (``--ballast-mb`` every ``--save-every``
   steps), mirrored in the background to the shaped S3, against the same run with
   no mirroring, alternating; the ratio of the RL phase's wall times, per round (the
   pair ran back to back) and of the medians. Target: at most 1.05x. It also prints
   how many checkpoints reached the store and how many a newer one replaced in the
   queue.

    python benchmarks/storage.py [--against d166d27] [--size-mb 1024] [--rounds 1] [--json OUT]
    python benchmarks/storage.py --step-time [--steps 300] [--ballast-mb 256] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MB = 1000 * 1000
MIB = 1024 * 1024
#: bytes of an object moto keeps in memory (its default, 5 MiB, sends the rest to disk)
MOTO_BUFFER = 4096 * MIB

SIDE = """
import json, sys, time
from pathlib import Path
from gmpo_kfp import storage
folder, uri, back = sys.argv[1:4]
start = time.perf_counter()
storage.push_dir(folder, uri)
up = time.perf_counter() - start
start = time.perf_counter()
storage.fetch_dir(uri, back)
down = time.perf_counter() - start
print(json.dumps({"up_s": up, "down_s": down, "code": storage.__file__}))
"""


def checkpoint_folder(root: Path, size_mb: int) -> Path:
    """Four shards holding most of ``size_mb`` MiB, and 64 small files (configs, RNG
    states, per-rank extras), of incompressible bytes."""
    folder = root / "global_step_100"
    (folder / "extra").mkdir(parents=True)
    shard = (size_mb * MIB - 64 * 64 * 1024) // 4
    block = os.urandom(MIB)
    for i in range(4):
        with (folder / f"model_world_size_4_rank_{i}.pt").open("wb") as fh:
            left = shard
            while left > 0:
                fh.write(block[: min(left, MIB)])
                left -= MIB
                block = block[1:] + block[:1]
    for i in range(64):
        (folder / "extra" / f"rank_{i}.json").write_bytes(os.urandom(64 * 1024))
    return folder


def checkout_of(against: str, work: Path) -> Path:
    """A folder to put first on PYTHONPATH for ``against`` (a folder, or a git revision)."""
    path = Path(against)
    if (path / "gmpo_kfp").is_dir():
        return path
    target = work / f"rev-{against}"
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", against, "gmpo_kfp"],
        check=True,
        capture_output=True,
    ).stdout
    archive_path = work / "rev.tar"
    archive_path.write_bytes(archive)
    with tarfile.open(archive_path) as tar:
        tar.extractall(target, filter="data")
    return target


@contextlib.contextmanager
def shaped_s3(rate_mb: float, delay_ms: float):
    """moto_server behind the shaping proxy, both niced; yields (endpoint, bucket URI)."""
    from tests.support.faulty_proxy import Proxy
    from tests.support.s3server import moto_server, s3_env

    # moto spills every object over 5 MiB to a temporary file: on this machine's one disk
    # that is write-back the training's own checkpoints then wait behind. A real S3's
    # disks are elsewhere: the simulated one keeps its objects in memory.
    with moto_server(env={"MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": str(MOTO_BUFFER)}) as url:
        proxy = Proxy(int(url.rsplit(":", 1)[1]))
        endpoint = proxy.start(rate=rate_mb * MB, delay_ms=delay_ms)
        # per thread on Linux: the servers' main threads, before they start the threads
        # that serve connections (which inherit it)
        for pid in (url.pid, proxy.proc.pid):
            os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
        try:
            with s3_env(endpoint):
                from gmpo_kfp.storage import s3_client

                bucket = f"bench-{uuid.uuid4().hex[:8]}"
                s3_client().create_bucket(Bucket=bucket)
                yield endpoint, f"s3://{bucket}"
        finally:
            proxy.stop()


def run_side(code: Path, folder: Path, uri: str, back: Path, env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", SIDE, str(folder), uri, str(back)],
        cwd=tempfile.gettempdir(),
        env={**env, "PYTHONPATH": str(code)},
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def transfers(a: argparse.Namespace, work: Path) -> dict:
    old = checkout_of(a.against, work)
    folder = checkpoint_folder(work, a.size_mb)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"folder: {size / MIB:.0f} MiB in {sum(1 for _ in folder.rglob('*.*'))} files")
    sides = {"before": old, "after": ROOT}
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    with shaped_s3(a.rate_mb, a.delay_ms) as (_, bucket):
        env = {**os.environ, "GMPO_S3_MAX_CONCURRENCY": str(a.concurrency)}
        from gmpo_kfp.storage import open_store

        for r in range(a.rounds):
            for name, code in sides.items():
                uri = f"{bucket}/{name}-{r}"
                back = work / f"back-{name}-{r}"
                got = run_side(code, folder, uri, back, env)
                got["up_mb_s"] = size / MB / got["up_s"]
                got["down_mb_s"] = size / MB / got["down_s"]
                runs[name].append(got)
                print(
                    f"{name:6s} up {got['up_s']:6.1f} s ({got['up_mb_s']:5.1f} MB/s), "
                    f"down {got['down_s']:6.1f} s ({got['down_mb_s']:5.1f} MB/s)  "
                    f"[{got['code']}]",
                    flush=True,
                )
                open_store(uri).delete_prefix("")  # moto holds it all in memory
                subprocess.run(["rm", "-rf", str(back)], check=True)
    med = {
        n: {k: statistics.median(r[k] for r in v) for k in ("up_s", "down_s")}
        for n, v in runs.items()
    }
    ratio = {k: med["before"][k] / med["after"][k] for k in ("up_s", "down_s")}
    per_stream = statistics.median(r["up_mb_s"] for r in runs["before"])
    print(
        f"\nupload {ratio['up_s']:.1f}x faster, download {ratio['down_s']:.1f}x faster "
        f"({a.concurrency} concurrent parts; target >= 4x); one stream: {per_stream:.1f} MB/s"
    )
    return {
        "size_bytes": size,
        "rate_mb_s": a.rate_mb,
        "delay_ms": a.delay_ms,
        "concurrency": a.concurrency,
        "against": a.against,
        "runs": runs,
        "speedup_up": ratio["up_s"],
        "speedup_down": ratio["down_s"],
        "per_stream_mb_s": per_stream,
    }


def step_time(a: argparse.Namespace, work: Path) -> dict:
    from transformers import TrainerCallback

    from gmpo_kfp.config import with_values
    from gmpo_kfp.engines.training import train
    from gmpo_kfp.engines.trl import TRLEngine
    from gmpo_kfp.presets import load_preset

    ballast = os.urandom(a.ballast_mb * MIB)

    class Ballast(TrainerCallback):
        """Puts a large file into each checkpoint's folder before TRL saves into it."""

        def on_step_end(self, args, state, control, **kwargs):
            if args.save_steps and state.global_step % int(args.save_steps) == 0:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "ballast.bin").write_bytes(ballast)

    def one(name: str, output_uri: str, r: int) -> dict:
        out = work / f"{name}-{r}"
        config = with_values(
            load_preset("tiny-cpu"),
            {
                "sft.enabled": False,
                "trainer.total_steps": a.steps,
                "trainer.save_freq": a.save_every,
                "trainer.test_freq": -1,
                "trainer.val_before_train": False,
                "trainer.max_ckpt_to_keep": 2,
                "trainer.output_dir": str(out),
                "trainer.resume": "disable",
            },
        )
        os.sync()  # the previous run's checkpoint writes on disk, not written back during this one
        start = time.perf_counter()
        result = train(
            config, engine=TRLEngine(callbacks=[Ballast()]), progress=False, output_uri=output_uri
        )
        wall = time.perf_counter() - start  # with the wait for the last mirror at the end
        got = {"rl_s": result.seconds, "steps": result.steps, "wall_s": wall}
        print(
            f"{name:9s} RL {result.seconds:6.1f} s for {result.steps} steps "
            f"({result.seconds / result.steps * 1000:.0f} ms/step; whole call {wall:.1f} s)",
            flush=True,
        )
        subprocess.run(["rm", "-rf", str(out)], check=True)
        return got

    runs: dict[str, list[dict]] = {"no-mirror": [], "mirror": []}
    with shaped_s3(a.rate_mb, a.delay_ms) as (_, bucket):
        from gmpo_kfp.storage import open_store

        one("warm-up", "", -1)  # the first run in a process pays imports and first calls
        for r in range(a.rounds):
            runs["no-mirror"].append(one("no-mirror", "", r))
            uri = f"{bucket}/run-{r}"
            got = one("mirror", uri, r)
            body = json.loads(open_store(uri).get_bytes("checkpoints/latest.json"))
            got["mirrored_last"] = body["step"]
            got["kept"] = body["kept"]
            print(f"          latest in S3: step {body['step']}, kept {body['kept']}")
            runs["mirror"].append(got)
            open_store(uri).delete_prefix("")
    med = {n: statistics.median(x["rl_s"] for x in v) for n, v in runs.items()}
    ratio = med["mirror"] / med["no-mirror"]
    # each round's pair ran back to back: its ratio cancels the machine's drift over rounds
    pairs = [m["rl_s"] / n["rl_s"] for m, n in zip(runs["mirror"], runs["no-mirror"], strict=True)]
    paired = statistics.median(pairs)
    print(
        f"\nstep time with background mirroring: {paired:.3f}x of none, the median of each "
        f"round's ratio ({', '.join(f'{p:.3f}' for p in pairs)}); {ratio:.3f}x of the medians "
        f"({a.ballast_mb} MiB every {a.save_every} steps; target <= 1.05x)"
    )
    return {
        "runs": runs,
        "ratio": ratio,
        "paired_ratios": pairs,
        "paired_ratio": paired,
        "ballast_mb": a.ballast_mb,
        "save_every": a.save_every,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", default="d166d27", help="a checkout folder or a git revision")
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--rate-mb", type=float, default=20.0, help="MB/s per connection")
    ap.add_argument("--delay-ms", type=float, default=20.0, help="round trip")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--step-time", action="store_true")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--save-every", type=int, default=25)
    ap.add_argument("--ballast-mb", type=int, default=256)
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gmpo-storage-bench-") as tmp:
        result = step_time(a, Path(tmp)) if a.step_time else transfers(a, Path(tmp))
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

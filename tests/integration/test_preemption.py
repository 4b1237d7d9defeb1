"""Preemption: a train step SIGKILLed mid-run and restarted in an empty pod resumes from its
latest checkpoint in S3, loses at most one checkpoint interval, and ends with the weights
of an uninterrupted run (TRL engine, tiny model, fixed seed)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gmpo_kfp import metrics as M
from gmpo_kfp.storage import open_store, s3_client
from gmpo_kfp.workflow import stages
from tests.integration.test_stages_s3 import SHORT, prepare_arithmetic
from tests.support.s3server import moto_server, s3_env

ROOT = Path(__file__).resolve().parents[2]
# long enough that the mirror (a child process at SCHED_IDLE beside a busy step) has
# checkpoint KILL_AFTER in the store well before the run ends
STEPS, SAVE_EVERY, KILL_AFTER = 120, 4, 12
IN_FLIGHT_STEPS = 400  # ~15 s: one checkpoint up and the next half-sent at 1 MB/s a stream


@pytest.fixture(scope="module")
def bucket():
    with moto_server() as url, s3_env(url):
        name = f"preempt-{uuid.uuid4().hex[:8]}"
        s3_client().create_bucket(Bucket=name)
        yield f"s3://{name}"


def step_kwargs(tmp_path: Path, output: str, work: str) -> dict:
    return {
        "preset": "tiny-cpu",
        "overrides": [
            *SHORT,
            f"trainer.total_steps={STEPS}",
            f"trainer.save_freq={SAVE_EVERY}",
            "optim.lr_schedule=constant",
            "optim.warmup_steps=0",
        ],
        "train_path": str(tmp_path / "t.parquet"),
        "val_path": str(tmp_path / "v.parquet"),
        "output_uri": output,
        "work_dir": str(tmp_path / work),
        "curves_path": str(tmp_path / f"{work}.md"),
    }


def latest_step(store) -> int:
    raw = store.get_bytes("checkpoints/latest.json")
    return int(json.loads(raw)["step"]) if raw else 0


def test_sigkill_mid_run_then_restart_matches_an_uninterrupted_run(tmp_path, bucket):
    prepare_arithmetic(tmp_path)
    straight = stages.train_stage(**step_kwargs(tmp_path, f"{bucket}/straight", "w0"))

    output = f"{bucket}/preempted"
    store = open_store(output)
    preempt(step_kwargs(tmp_path, output, "w1"), store, KILL_AFTER, tmp_path)
    done_at_kill = max(r["step"] for r in M.read_metrics(tmp_path / "w1" / "metrics.jsonl"))
    assert done_at_kill < STEPS, "the run ended before the kill: nothing was tested"
    in_store = latest_step(store)  # the newest checkpoint that reached S3 before the kill

    # the restarted step: a fresh pod, an empty work folder, the same output URI
    resumed = stages.train_stage(**step_kwargs(tmp_path, output, "w2"))
    restored = resumed["restored_step"]
    # It resumes from the newest mirrored checkpoint: what it loses is the steps since
    # then (the mirror polls each second, so at this model's speed that can exceed one
    # checkpoint interval: a timing, not a guarantee, so not asserted).
    assert restored == in_store >= KILL_AFTER, (restored, in_store)
    assert restored % SAVE_EVERY == 0 and restored <= done_at_kill, (done_at_kill, restored)
    assert resumed["metrics"]["steps"] == STEPS

    a = load_file(str(tmp_path / "w0" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "w2" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    assert straight["metrics"]["steps"] == STEPS


def _session_pids(sid: int) -> list[int]:
    """Every live process of session ``sid`` (the worker, verl, Ray's daemons and workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def kill_session(worker: subprocess.Popen) -> None:
    """SIGKILL the worker and everything it started, as a node loss does to a pod."""
    sid = os.getsid(worker.pid)
    for pid in _session_pids(sid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    worker.wait()
    deadline = time.monotonic() + 30
    while _session_pids(sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _session_pids(sid), "processes of the killed step survived"


def preempt(
    kwargs: dict,
    store,
    kill_after: int,
    tmp_path: Path,
    wait_s: float = 400,
    *,
    env: dict | None = None,
    also=lambda: True,
) -> None:
    """Run a train step in its own process and session; SIGKILL all of it once checkpoint
    ``kill_after`` is in the store (and ``also()`` holds), as a node loss does to a pod."""
    log = tmp_path / "worker.log"  # verl says a lot: a pipe nobody reads would block it
    with log.open("w") as sink:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.support.preempt_worker", json.dumps(kwargs)],
            cwd=ROOT,
            env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own session: verl's Ray processes die with it
        )
    try:
        deadline = time.monotonic() + wait_s
        while latest_step(store) < kill_after or not also():
            assert worker.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint reached the store in time"
            time.sleep(0.05)
    finally:
        kill_session(worker)
    assert worker.returncode == -signal.SIGKILL


def in_flight(store) -> list[str]:
    """Checkpoint folders in the store that ``latest.json`` does not name: being sent."""
    raw = store.get_bytes("checkpoints/latest.json")
    kept = set(json.loads(raw)["kept"]) if raw else set()
    names = {k.split("/")[1] for k in store.list_keys("checkpoints/") if k.count("/") >= 2}
    return sorted(names - kept)


def test_killed_while_a_checkpoint_is_in_flight_the_previous_one_stays_latest(tmp_path, bucket):
    """The store is slow (a shaped link): checkpoints go up in the background while
    training runs on; the step is killed while one is half-sent."""
    from tests.support.faulty_proxy import Proxy

    prepare_arithmetic(tmp_path)
    output = f"{bucket}/in-flight"
    store = open_store(output)
    proxy = Proxy(int(os.environ["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]))
    slow = proxy.start(rate=1_000_000, delay_ms=20)  # 1 MB/s a stream: seconds a checkpoint
    longer = [f"trainer.total_steps={IN_FLIGHT_STEPS}", "trainer.max_ckpt_to_keep=2"]
    kwargs = step_kwargs(tmp_path, output, "w1")
    kwargs["overrides"] += longer  # later values win: long enough to outlast a slow upload
    try:
        preempt(
            kwargs,
            store,
            SAVE_EVERY,
            tmp_path,
            env={"AWS_ENDPOINT_URL": slow},
            also=lambda: bool(in_flight(store)),
        )
    finally:
        proxy.stop()
    body = json.loads(store.get_bytes("checkpoints/latest.json"))
    half_sent = in_flight(store)
    assert half_sent and body["checkpoint"] not in half_sent
    for rel, meta in body["files"].items():  # the latest one is whole
        key = f"checkpoints/{body['checkpoint']}/{rel}"
        assert store.holds(key, meta["sha256"]), key
    done_at_kill = max(r["step"] for r in M.read_metrics(tmp_path / "w1" / "metrics.jsonl"))
    assert body["step"] < done_at_kill < IN_FLIGHT_STEPS

    kwargs = step_kwargs(tmp_path, output, "w2")
    kwargs["overrides"] += longer
    resumed = stages.train_stage(**kwargs)
    assert resumed["restored_step"] == body["step"]
    assert resumed["metrics"]["steps"] == IN_FLIGHT_STEPS
    assert latest_step(store) == IN_FLIGHT_STEPS


VERL_STEPS, VERL_SAVE_EVERY, VERL_KILL_AFTER = 12, 2, 4


def verl_step_kwargs(tmp_path: Path, output: str, work: str) -> dict:
    kwargs = step_kwargs(tmp_path, output, work)
    kwargs["overrides"] = [
        *SHORT,
        "engine=verl",
        f"trainer.total_steps={VERL_STEPS}",
        f"trainer.save_freq={VERL_SAVE_EVERY}",
        "optim.lr_schedule=constant",
        "optim.warmup_steps=0",
        "batch.log_prob_micro_batch_size_per_gpu=32",
    ]
    return kwargs


@pytest.mark.slow
def test_verl_step_sigkilled_then_restarted_resumes_from_the_mirrored_checkpoint(tmp_path, bucket):
    prepare_arithmetic(tmp_path, 128)
    output = f"{bucket}/verl-preempted"
    store = open_store(output)
    preempt(verl_step_kwargs(tmp_path, output, "w1"), store, VERL_KILL_AFTER, tmp_path)
    done_at_kill = max(r["step"] for r in M.read_metrics(tmp_path / "w1" / "metrics.jsonl"))
    assert done_at_kill < VERL_STEPS, "the run ended before the kill: nothing was tested"

    resumed = stages.train_stage(**verl_step_kwargs(tmp_path, output, "w2"))
    restored = resumed["restored_step"]
    assert restored is not None and restored >= VERL_KILL_AFTER
    assert 0 <= done_at_kill - restored <= VERL_SAVE_EVERY, (done_at_kill, restored)
    assert resumed["metrics"]["steps"] == VERL_STEPS
    # the restarted run continued after the restored step: it did not start over
    steps = [r["step"] for r in M.read_metrics(tmp_path / "w2" / "metrics.jsonl")]
    assert steps == sorted(steps) and steps[-1] == VERL_STEPS
    assert [s for s in steps if s <= restored] == list(range(1, restored + 1))
    assert latest_step(store) == VERL_STEPS

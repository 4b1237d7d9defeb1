"""Checkpoints mirrored to ``<output_uri>/checkpoints`` while training runs, for either engine.

A retried train step (a preempted pod, a new node, an empty work folder) restores
the latest mirrored checkpoint and resumes from it. The mirror watches the
engine's checkpoint folder, as the Prometheus exporter follows the metrics file:
no engine calls it, so TRL and verl are mirrored the same way. Which folders are
complete checkpoints is the engine's :class:`~gmpo_kfp.engines.base.CheckpointLayout`.

The warm-up model (``sft.enabled``) is the start of every checkpoint's run (the
policy's first weights, the reference model of the KL term, the tokenizer): it is
mirrored once, before the first RL step, so a retry resumes with it instead of
training it again or falling back to the base model.

Store layout::

    checkpoints/<name>/...      the checkpoint's files
    checkpoints/metrics.jsonl   the metrics file as it was at that checkpoint
    checkpoints/latest.json     {"checkpoint", "step", "files": {rel: {size, sha256}}}
    sft-model/...               the warm-up model's files
    sft-model.json              {"files": {rel: {size, sha256}}, "info": warm-up figures}

``latest.json`` (``sft-model.json``) is written after every file it names, so a
reader only ever restores a complete one; every restored file is checked against
its SHA-256.

Mirroring runs in the background, so training never waits for it:

- a watcher thread finds each new complete checkpoint and snapshots it with hard
  links under ``work_dir/.mirroring/`` (instant, no copy; the engine may rotate its
  own folder away meanwhile);
- one uploader thread sends one checkpoint at a time through a child process
  (:mod:`gmpo_kfp.engines.upload_worker`: the hashing and s3transfer's threads off
  the training's interpreter lock), its files ``max_concurrency`` requests at once
  (:mod:`gmpo_kfp.transfer`), on the CPU only when training leaves it idle
  (:func:`yield_cpu`); behind it a bounded queue
  (``storage.mirror_queue``, default 1) holds the next ones, and a newer checkpoint
  replaces the oldest waiting one when full;
- ``latest.json`` moves to a checkpoint only after all its files are up; then, with
  ``trainer.max_ckpt_to_keep`` = K, all but the newest K mirrored checkpoints are
  deleted (and any left half-sent by a killed attempt);
- a file whose key already holds the same SHA-256 is not sent again.

A run killed while a checkpoint is in flight leaves the previous one as the latest.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import sys
import threading
from pathlib import Path

from gmpo_kfp import storage
from gmpo_kfp.engines.base import Checkpoint, CheckpointLayout, latest
from gmpo_kfp.engines.upload_worker import UploadWorker
from gmpo_kfp.transfer import TransferSettings

LATEST = "latest.json"
STAGING = ".mirroring"
#: the uploader's CPU priority where SCHED_IDLE is missing (Linux nice; 19 is the lowest)
NICE = 19
METRICS = "metrics.jsonl"
WARMUP = "sft-model"
WARMUP_POINTER = "sft-model.json"


def yield_cpu() -> None:
    """Run this thread (and the threads it starts, which inherit it) only where the CPU
    would otherwise idle: Linux's SCHED_IDLE, else the lowest nice. Both are per
    thread on Linux; elsewhere this does nothing.

    On a busy 2-core machine the tiny model's steps slowed by 24% with the uploader
    at nice 10, 13% at nice 19 and 5% at SCHED_IDLE (benchmarks/storage.py
    --step-time, 2026-12-02, while the simulated S3 still wrote to the same disk; with
    it in memory, SCHED_IDLE: 1.00x); under contention SCHED_IDLE still gets a small
    share, so uploads go on, and on a GPU node's mostly idle CPUs they run at full
    speed."""
    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, tid, NICE)


def _say(message: str) -> None:
    print(f"gmpo: {message}", file=sys.stderr, flush=True)


class CheckpointMirror:
    """Uploads each new complete checkpoint of ``work_dir/checkpoints``; restores the latest."""

    def __init__(
        self,
        output_uri: str,
        work_dir: str | Path,
        layout: CheckpointLayout,
        *,
        poll_s: float = 1.0,
        keep: int | None = None,
        queue_size: int = 1,
        transfer: TransferSettings | None = None,
    ):
        self.output_uri = output_uri.rstrip("/")
        self.uri = f"{self.output_uri}/checkpoints"
        self.work_dir = Path(work_dir)
        self.root = self.work_dir / "checkpoints"
        self.layout = layout
        self.poll_s = poll_s
        self.keep = keep
        self.transfer = transfer
        self.staging = self.work_dir / STAGING
        self.mirrored: list[int] = []  # steps uploaded by this mirror, in order
        self.dropped: list[int] = []  # steps a newer checkpoint replaced in the queue
        self._seen = -1  # newest step queued (or already mirrored)
        self._queue: queue.Queue[Checkpoint] = queue.Queue(maxsize=max(1, queue_size))
        self._stop = threading.Event()
        self._drain = threading.Event()
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None
        self._kept: list[str] = []  # mirrored checkpoints, oldest first (latest.json's)
        self._latest: dict = {}  # the body of the latest.json this mirror wrote
        self._metrics_seen = -1  # size of the metrics file last uploaded

    def _store(self) -> storage.Store:
        return storage.open_store(self.uri, transfer=self.transfer)

    # ------------------------------------------------------------------ restore

    def restore(self) -> Checkpoint | None:
        """Download the latest mirrored checkpoint (and its metrics) unless it is here."""
        store = self._store()
        raw = store.get_bytes(LATEST)
        if raw is None:
            return None
        body = json.loads(raw)
        name, step = body["checkpoint"], int(body["step"])
        local = self.root / name
        here = latest(self.layout, self.root)
        self._kept = list(body.get("kept") or [name])
        if here is None or here.step < step:
            files = [
                (f"{name}/{rel}", local / rel, storage.Checksum.manifest(meta["sha256"]))
                for rel, meta in body["files"].items()
            ]
            if body.get("metrics"):
                metrics = storage.Checksum.manifest(body["metrics"])
                files.append((METRICS, self.work_dir / METRICS, metrics))
            store.download_files(files)
        checkpoint = Checkpoint(step, local)
        self.layout.restored(self.root, checkpoint)
        _say(f"restored {name} (step {step}) from {store.url(name)}")
        return checkpoint

    # ------------------------------------------------------------------ warm-up model

    def save_warmup(self, folder: str | Path, info: dict | None) -> None:
        """Upload the warm-up model, then ``sft-model.json`` naming its files."""
        store = storage.open_store(self.output_uri, transfer=self.transfer)
        files = store.upload_dir(folder, WARMUP)
        body = {"files": files, "info": info}
        store.put_bytes(WARMUP_POINTER, json.dumps(body, sort_keys=True).encode())
        _say(f"warm-up model mirrored to {store.url(WARMUP)}")

    def has_warmup(self) -> bool:
        """A warm-up model is mirrored (its ``sft-model.json`` is there)."""
        return storage.open_store(self.output_uri).get_bytes(WARMUP_POINTER) is not None

    def restore_warmup(self, folder: str | Path) -> dict | None:
        """Download the mirrored warm-up model into ``folder`` (whole or not at all);
        returns its warm-up figures, or None when none was mirrored."""
        from gmpo_kfp.evaluation.models import replace_dir

        store = storage.open_store(self.output_uri, transfer=self.transfer)
        raw = store.get_bytes(WARMUP_POINTER)
        if raw is None:
            return None
        body = json.loads(raw)
        target = Path(folder)
        staging = target.parent / f".{target.name}.restoring"
        store.download_files(
            [
                (f"{WARMUP}/{rel}", staging / rel, storage.Checksum.manifest(meta["sha256"]))
                for rel, meta in body["files"].items()
            ]
        )
        replace_dir(staging, target)
        _say(f"restored the warm-up model from {store.url(WARMUP)}")
        return body.get("info") or {}

    # ------------------------------------------------------------------ mirror

    def upload(self, checkpoint: Checkpoint, worker: UploadWorker | None = None) -> None:
        """Upload one checkpoint (files already there with the same SHA-256 are skipped;
        its files through ``worker`` when given, else in this thread), then the metrics
        file, then point ``latest.json`` at it; then apply retention."""
        store = self._store()
        if worker is None:
            files, sent = store.upload_dir(checkpoint.path, checkpoint.name), store.sent
        else:
            files, sent = worker.upload_dir(
                self.uri, self.transfer, checkpoint.path, checkpoint.name
            )
        kept = [n for n in self._kept if n != checkpoint.name] + [checkpoint.name]
        if self.keep:
            kept = kept[-self.keep :]
        self._latest = {
            "checkpoint": checkpoint.name,
            "step": checkpoint.step,
            "files": files,
            "kept": kept,
        }
        self._put_latest(store)
        self._kept = kept
        self.mirrored.append(checkpoint.step)
        _say(
            f"checkpoint {checkpoint.name} (step {checkpoint.step}) mirrored to {self.uri}"
            + (f" ({sent} of {len(files)} files sent)" if sent < len(files) else "")
        )
        if self.keep:
            self._prune(store)

    def _prune(self, store: storage.Store) -> None:
        """Delete every mirrored checkpoint folder but the kept ones (older ones, and any
        a killed attempt left half-sent), once the newest is complete."""
        names = {k.split("/", 1)[0] for k in store.list_keys() if "/" in k}
        for name in sorted(names - set(self._kept)):
            store.delete_prefix(name)
            _say(f"deleted mirrored {name} (keeping the newest {self.keep})")

    def _put_latest(self, store: storage.Store) -> None:
        """The metrics file as it is now, then ``latest.json`` naming it and the checkpoint.

        A restore keeps the records up to the checkpoint's step; the step's own record
        is often written just after its checkpoint, so the metrics follow the run.
        """
        body = dict(self._latest)
        metrics = self.work_dir / METRICS
        if metrics.exists():
            snapshot = self.work_dir / f".{METRICS}.mirror"
            snapshot.write_bytes(metrics.read_bytes())  # the file grows while it uploads
            body["metrics"] = storage.sha256_file(snapshot)
            store.upload_file(snapshot, METRICS, sha256=body["metrics"])  # hashed once
            self._metrics_seen = metrics.stat().st_size
            snapshot.unlink()
        store.put_bytes(LATEST, json.dumps(body, sort_keys=True).encode())

    def _metrics_reach(self, step: int) -> bool:
        """The metrics file holds a record of ``step`` or later (or there is no file)."""
        metrics = self.work_dir / METRICS
        if not metrics.exists():
            return True
        start = max(0, metrics.stat().st_size - 65536)
        with metrics.open("rb") as fh:
            fh.seek(start)
            lines = fh.read().splitlines()
        if start:
            lines = lines[1:]  # read from inside a line: its tail is not a record
        steps = []
        for line in lines:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                steps.append(int(json.loads(line)["step"]))
        return bool(steps) and max(steps) >= step

    def _snapshot(self, checkpoint: Checkpoint) -> Checkpoint:
        """Hard links of the checkpoint's files under ``.mirroring/`` (the checkpoint
        itself where the file system refuses links)."""
        target = self.staging / checkpoint.name
        shutil.rmtree(target, ignore_errors=True)
        try:
            for path in sorted(p for p in checkpoint.path.rglob("*") if p.is_file()):
                link = target / path.relative_to(checkpoint.path)
                link.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, link)
        except FileNotFoundError:
            shutil.rmtree(target, ignore_errors=True)
            raise  # rotated away while linking: a newer one is there
        except OSError:
            shutil.rmtree(target, ignore_errors=True)
            return checkpoint
        return Checkpoint(checkpoint.step, target)

    def _release(self, checkpoint: Checkpoint) -> None:
        if self.staging in checkpoint.path.parents:
            shutil.rmtree(checkpoint.path, ignore_errors=True)

    def scan(self, *, final: bool = False) -> None:
        """Queue the newest complete checkpoint if it is newer than the last one queued,
        once its step's metrics record is written (verl logs a step after saving it; a
        restore would miss it otherwise; ``final``: the run is over, queue it anyway).
        A full queue drops its oldest waiting checkpoint: the newer one supersedes it."""
        newest = latest(self.layout, self.root)
        if newest is None or newest.step <= self._seen:
            return
        if not final and not self._metrics_reach(newest.step):
            return
        try:
            snap = self._snapshot(newest)
        except FileNotFoundError:
            return
        self._seen = newest.step
        while True:
            try:
                self._queue.put_nowait(snap)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    old = self._queue.get_nowait()
                    self.dropped.append(old.step)
                    self._release(old)

    def flush(self) -> None:
        """Upload what is queued now, in this thread (a mirror that was not started)."""
        while self._upload_next(0):
            pass

    def _upload_next(self, timeout: float, worker: UploadWorker | None = None) -> bool:
        """Upload the next queued checkpoint (False: none came within ``timeout``); with
        none, refresh the mirrored metrics file when it has grown."""
        try:
            checkpoint = self._queue.get(timeout=timeout)
        except queue.Empty:
            metrics = self.work_dir / METRICS
            if self._latest and metrics.exists() and metrics.stat().st_size != self._metrics_seen:
                self._put_latest(self._store())
            return False
        try:
            self.upload(checkpoint, worker)
        finally:
            self._release(checkpoint)
        return True

    def _watch(self) -> None:
        try:
            while not self._stop.wait(self.poll_s):
                self.scan()
        except BaseException as exc:  # re-raised in the training thread by stop()
            self._error = exc

    def _uploader(self) -> None:
        worker = None
        try:
            # started by this thread (it dies with it) before it yields the CPU: the
            # child starts at the step's priority and lowers its own once imported
            worker = UploadWorker()
            yield_cpu()
            while not self._stop.is_set() or (self._drain.is_set() and not self._queue.empty()):
                self._upload_next(self.poll_s, worker)
        except BaseException as exc:
            self._error = exc
            self._stop.set()
        finally:
            if worker is not None:
                worker.close()

    def start(self) -> CheckpointMirror:
        """Take the current newest checkpoint as mirrored, then watch for new ones."""
        here = latest(self.layout, self.root)
        if here is not None:
            self.mirrored.append(here.step)
            self._seen = here.step
        shutil.rmtree(self.staging, ignore_errors=True)
        for target, name in ((self._watch, "gmpo-mirror"), (self._uploader, "gmpo-upload")):
            self._threads.append(threading.Thread(target=target, name=name, daemon=True))
            self._threads[-1].start()
        return self

    def _join(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads = []

    def stop(self) -> None:
        """Stop watching, queue what the run ended with and wait until everything queued
        is mirrored; a mirror failure raises here."""
        self._stop.set()
        if self._threads:
            self._threads[0].join()  # the watcher
        if self._error is None:
            self.scan(final=True)
            self._drain.set()
        self._join()
        if self._error is not None:
            raise self._error
        self.flush()  # the uploader may have stopped before the last one was queued
        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> CheckpointMirror:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.stop()
        else:  # the run failed: stop watching and uploading, keep its error
            self._join()

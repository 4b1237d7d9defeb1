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
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from pathlib import Path

from gmpo_kfp import storage
from gmpo_kfp.engines.base import Checkpoint, CheckpointLayout, latest

LATEST = "latest.json"
METRICS = "metrics.jsonl"
WARMUP = "sft-model"
WARMUP_POINTER = "sft-model.json"


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
    ):
        self.output_uri = output_uri.rstrip("/")
        self.uri = f"{self.output_uri}/checkpoints"
        self.work_dir = Path(work_dir)
        self.root = self.work_dir / "checkpoints"
        self.layout = layout
        self.poll_s = poll_s
        self.mirrored: list[int] = []  # steps uploaded by this mirror, in order
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._latest: dict = {}  # the body of the latest.json this mirror wrote
        self._metrics_seen = -1  # size of the metrics file last uploaded

    def _store(self) -> storage.Store:
        return storage.open_store(self.uri)

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
        if here is None or here.step < step:
            for rel, meta in body["files"].items():
                store.download_file(f"{name}/{rel}", local / rel, sha256=meta["sha256"])
            if body.get("metrics"):
                store.download_file(METRICS, self.work_dir / METRICS, sha256=body["metrics"])
        checkpoint = Checkpoint(step, local)
        self.layout.restored(self.root, checkpoint)
        _say(f"restored {name} (step {step}) from {store.url(name)}")
        return checkpoint

    # ------------------------------------------------------------------ warm-up model

    def save_warmup(self, folder: str | Path, info: dict | None) -> None:
        """Upload the warm-up model, then ``sft-model.json`` naming its files."""
        store = storage.open_store(self.output_uri)
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

        store = storage.open_store(self.output_uri)
        raw = store.get_bytes(WARMUP_POINTER)
        if raw is None:
            return None
        body = json.loads(raw)
        target = Path(folder)
        staging = target.parent / f".{target.name}.restoring"
        for rel, meta in body["files"].items():
            store.download_file(f"{WARMUP}/{rel}", staging / rel, sha256=meta["sha256"])
        replace_dir(staging, target)
        _say(f"restored the warm-up model from {store.url(WARMUP)}")
        return body.get("info") or {}

    # ------------------------------------------------------------------ mirror

    def upload(self, checkpoint: Checkpoint) -> None:
        """Upload one checkpoint, then the metrics file, then point ``latest.json`` at it."""
        store = self._store()
        files = store.upload_dir(checkpoint.path, checkpoint.name)
        self._latest = {"checkpoint": checkpoint.name, "step": checkpoint.step, "files": files}
        self._put_latest(store)
        self.mirrored.append(checkpoint.step)
        _say(f"checkpoint {checkpoint.name} (step {checkpoint.step}) mirrored to {self.uri}")

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
            store.upload_file(snapshot, METRICS)
            body["metrics"] = storage.sha256_file(snapshot)
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

    def scan(self, *, final: bool = False) -> None:
        """Upload the newest complete checkpoint if it is newer than the last one mirrored,
        once its step's metrics record is written (verl logs a step after saving it; a
        restore would miss it otherwise; ``final``: the run is over, upload anyway); else
        refresh the mirrored metrics file when it has grown."""
        newest = latest(self.layout, self.root)
        if newest is not None and not (self.mirrored and newest.step <= self.mirrored[-1]):
            if not final and not self._metrics_reach(newest.step):
                return
            # FileNotFoundError: rotated away by the engine while uploading; a newer one is there
            with contextlib.suppress(FileNotFoundError):
                self.upload(newest)
            return
        metrics = self.work_dir / METRICS
        if self._latest and metrics.exists() and metrics.stat().st_size != self._metrics_seen:
            self._put_latest(self._store())

    def _watch(self) -> None:
        try:
            while not self._stop.wait(self.poll_s):
                self.scan()
        except BaseException as exc:  # re-raised in the training thread by stop()
            self._error = exc

    def start(self) -> CheckpointMirror:
        """Mirror the current newest checkpoint as already there, then watch for new ones."""
        here = latest(self.layout, self.root)
        if here is not None:
            self.mirrored.append(here.step)
        self._thread = threading.Thread(target=self._watch, name="gmpo-mirror", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching and mirror what the run ended with; a mirror failure raises here."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        self.scan(final=True)

    def __enter__(self) -> CheckpointMirror:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.stop()
        else:  # the run failed: stop watching, keep its error
            self._stop.set()
            if self._thread is not None:
                self._thread.join()

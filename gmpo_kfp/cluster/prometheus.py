"""Training, evaluation and registration metrics for Prometheus: a ``/metrics`` endpoint and
Pushgateway pushes. Names live in :mod:`gmpo_kfp.metrics`.

Both engines write the same metrics file (verl's ``file`` logger, ``$VERL_FILE_LOGGER_PATH``;
the TRL engine in its shape), so one :class:`MetricsFollower` tails that file as it grows
and feeds the gauges: nothing in verl or TRL is patched. Pushes are grouped by stable
keys (``pipeline``, ``model``, ``stage``), never by run id, so a new run replaces the
last one's series instead of piling up groups; the run id is a label of ``gmpo_run_info``.
A push that fails is reported once and never stops training.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from gmpo_kfp import metrics as M
from gmpo_kfp import settings

JOB = "gmpo"
PUSHGATEWAY_ENV = "GMPO_PUSHGATEWAY"


def pushgateway_url(configured: str = "") -> str:
    """The configured URL, else ``$GMPO_PUSHGATEWAY``, else '' (no push)."""
    return configured or os.environ.get(PUSHGATEWAY_ENV, "")


def _registry(info: Mapping[str, str]) -> Any:
    """A registry of our own with the run's info metric in it."""
    from prometheus_client import CollectorRegistry, Info, disable_created_metrics

    disable_created_metrics()  # no *_created series next to the counter
    registry = CollectorRegistry()
    Info(M.PROM_RUN_INFO, "the run behind these series", registry=registry).info(
        {k: str(v) for k, v in dict(info).items()}
    )
    return registry


def _push(registry: Any, gateway: str, grouping: Mapping[str, str], *, quiet: bool = False) -> bool:
    """Replace the group's series on the Pushgateway; False (and a warning unless
    ``quiet``) on failure: a push never stops the work it reports on."""
    from prometheus_client import push_to_gateway

    try:
        push_to_gateway(
            gateway, job=JOB, registry=registry, grouping_key=dict(grouping), timeout=10
        )
        return True
    except OSError as exc:
        if not quiet:
            print(f"gmpo: warning: Pushgateway {gateway} refused a push ({exc})", file=sys.stderr)
        return False


class Exporter:
    """A training run's gauges, in a registry of their own."""

    def __init__(self, *, pipeline: str, model: str, stage: str, info: Mapping[str, str] = ()):
        from prometheus_client import Counter, Gauge

        self.registry = _registry(info)
        self.grouping = {"pipeline": pipeline, "model": model, "stage": stage}
        self.gauges = {
            key: Gauge(name, text, registry=self.registry)
            for key, (name, text) in M.PROMETHEUS_GAUGES.items()
        }
        self.step = Gauge(M.PROM_STEP, "last training step seen", registry=self.registry)
        self.active = Gauge(
            M.PROM_ACTIVE, "1 while training, 0 after a clean end", registry=self.registry
        )
        self.last_step_time = Gauge(
            M.PROM_LAST_STEP_TIME, "unix time of the last step", registry=self.registry
        )
        self.nonfinite = Counter(
            M.PROM_NONFINITE.removesuffix("_total"),
            "steps whose policy loss was NaN or infinite",
            registry=self.registry,
        )
        self.gpu_memory: Any = None  # made at the first record that reports GPU memory
        self._push_failed = False

    def observe(self, record: Mapping[str, Any]) -> None:
        """One metrics-file record: ``{"step": N, "data": {...}}``."""
        data = record.get("data", {})
        training = M.PG_LOSS in data or M.SCORE_MEAN in data
        for key, gauge in self.gauges.items():
            value = data.get(key)
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if numeric and math.isfinite(value):
                gauge.set(value)
        if M.PG_LOSS in data:
            loss = data[M.PG_LOSS]  # the metrics file writes a non-finite number as null
            if not isinstance(loss, (int, float)) or not math.isfinite(loss):
                self.nonfinite.inc()
        if training:
            self.step.set(int(record.get("step", 0)))
            self.last_step_time.set(time.time())
        self._gpu(data.get(M.GPU_MEMORY_GB))

    def _gpu(self, gib: Any) -> None:
        """The training processes' peak accelerator memory, from the record (where they
        report it: a process without a GPU reports none, or 0 on verl's CPU platform)."""
        if not isinstance(gib, (int, float)) or isinstance(gib, bool) or not gib > 0:
            return
        if self.gpu_memory is None:
            from prometheus_client import Gauge

            self.gpu_memory = Gauge(
                M.PROM_GPU_MEMORY,
                "peak accelerator memory allocated per training process (mean over ranks)",
                registry=self.registry,
            )
        self.gpu_memory.set(gib * 2**30)

    def serve(self, port: int, host: str = "0.0.0.0") -> Any:
        """Serve ``/metrics``; returns the server (``shutdown()`` stops it)."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server

    def push(self, gateway: str) -> bool:
        """Replace this group's series on the Pushgateway; False (and one warning) on failure."""
        ok = _push(self.registry, gateway, self.grouping, quiet=self._push_failed)
        self._push_failed = self._push_failed or not ok
        return ok


class MetricsFollower:
    """Tails a metrics file in a thread, feeding an :class:`Exporter` and pushing every N steps."""

    def __init__(
        self,
        path: str | os.PathLike,
        exporter: Exporter,
        *,
        gateway: str = "",
        push_every: int = 10,
        interval_s: float = 1.0,
    ):
        self.path = Path(path)
        self.exporter = exporter
        self.gateway = gateway
        self.push_every = push_every
        self.interval_s = interval_s
        self._offset = 0
        self._pending = b""
        self._last_pushed_step = -1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gmpo-metrics", daemon=True)

    def poll(self) -> int:
        """Read what was appended since the last call; the number of records read."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return 0
        if len(chunk) == 0 and self.path.stat().st_size < self._offset:
            self._offset, self._pending = 0, b""  # truncated (a resumed run rewrote it)
            return self.poll()
        self._offset += len(chunk)
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()  # a line still being written
        count = 0
        for line in lines:
            record = M.parse_record(line)
            if record is None:
                continue
            with contextlib.suppress(ValueError):  # a step that is not a number
                self.exporter.observe(record)
                count += 1
                self._maybe_push(int(record["step"]))
        return count

    def _maybe_push(self, step: int) -> None:
        if self.gateway and step >= self._last_pushed_step + self.push_every:
            self.exporter.push(self.gateway)
            self._last_pushed_step = step

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()

    def start(self) -> MetricsFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Read the rest, stop, mark the run ended, and push once more."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.poll()
        self.exporter.active.set(0)
        if self.gateway:
            self.exporter.push(self.gateway)


@contextlib.contextmanager
def exporting(config: Any, metrics_file: str | os.PathLike, *, run_id: str = "") -> Iterator[Any]:
    """Export a training run's metrics while the block runs (a no-op when nothing is on)."""
    m = config.monitoring
    gateway = pushgateway_url(m.pushgateway)
    if not m.metrics_port and not gateway:
        yield None
        return
    exporter = Exporter(
        pipeline=m.pipeline,
        model=m.model or config.name,
        stage="train",
        info={
            "run_id": run_id or Path(config.trainer.output_dir).name,
            "engine": config.engine,
            "loss": config.algorithm.loss,
            "model_path": config.model.path,
        },
    )
    server = exporter.serve(m.metrics_port, m.metrics_host) if m.metrics_port else None
    if server is not None:
        port = server.server_address[1]
        print(f"gmpo: metrics on http://{m.metrics_host}:{port}/metrics", file=sys.stderr)
    exporter.active.set(1)
    follower = MetricsFollower(metrics_file, exporter, gateway=gateway, push_every=m.push_every)
    follower.start()
    try:
        yield exporter
    finally:
        follower.stop()
        if server is not None:
            server.shutdown()
            server.server_close()


def push_results(
    *,
    stage: str,
    model: str,
    pipeline: str = settings.PIPELINE_NAME,
    gateway: str = "",
    pass_at_1: Mapping[str, float] | None = None,
    version: int | None = None,
    run_id: str = "",
) -> bool:
    """Evaluation and registration: push Pass@1 per benchmark and the registered version."""
    from prometheus_client import Gauge

    url = pushgateway_url(gateway)
    if not url:
        return False
    registry = _registry({"run_id": run_id})
    if pass_at_1:
        gauge = Gauge(
            M.PROM_PASS_AT_1, "Pass@1 of the evaluated model", ["benchmark"], registry=registry
        )
        for benchmark, value in pass_at_1.items():
            gauge.labels(benchmark=benchmark).set(value)
    if version is not None:
        Gauge(M.PROM_REGISTERED_VERSION, "version just registered", registry=registry).set(version)
    return _push(registry, url, {"pipeline": pipeline, "model": model, "stage": stage})

"""Compile, run locally and submit the ``gmpo_training`` pipeline (``gmpo compile|run|submit``).

- :func:`compile_pipeline`: the IR YAML, written atomically.
- :func:`run_local`: the whole pipeline through ``kfp.local``: in this environment
  (``SubprocessRunner``) or each step in its CPU image (``DockerRunner``, no network
  unless the run reads or writes S3); no cluster, no GPU, registry and run outputs
  under one folder.
- :func:`submit`: a run on a KFP server through ``kfp.Client`` (token from the
  environment or kube config, as the client does); an unreachable host fails fast.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from gmpo_kfp import settings
from gmpo_kfp.config import ConfigError, KueueConfig, parse_override
from gmpo_kfp.errors import UserError
from gmpo_kfp.presets import DEFAULT_PRESET

CONNECT_TIMEOUT_S = 10


class SubmitError(UserError, RuntimeError):
    """The KFP server cannot be reached or refused the run; the message says what to fix."""


def pipeline_parameters(
    *,
    preset: str,
    overrides: Sequence[str] = (),
    params: Sequence[str] = (),
    base: dict[str, Any] | None = None,
    cuda: bool = True,
) -> dict[str, Any]:
    """Pipeline arguments: ``--param k=v`` checked against the pipeline's parameters, and
    the train step's effective config (preset, overrides, the pipeline's ``engine``)
    checked as its engine will check it (``cuda``: the train step has GPUs), all before
    anything is contacted."""
    from gmpo_kfp.engines.base import check_config
    from gmpo_kfp.workflow.stages import train_config

    args: dict[str, Any] = {**(base or {}), "preset": preset, "overrides": list(overrides)}
    known = pipeline_parameter_names()
    for item in params:
        parts, value = parse_override(item)
        key = ".".join(parts)
        if key not in known:
            names = ", ".join(sorted(known))
            raise ConfigError(
                f"--param {key}: the pipeline has no such parameter; use one of {names}"
            )
        args[key] = value
    from gmpo_kfp.workflow.gate import GateError, gate_from_params

    try:  # the gate's numbers, checked before anything runs
        gate_from_params(args)
    except GateError as exc:
        raise ConfigError(f"--param {exc}") from None
    from gmpo_kfp.workflow.registry import WEIGHTS, RegistryError, check_weights

    try:
        check_weights(args.get("register_weights", WEIGHTS[0]), "register_weights")
    except RegistryError as exc:
        raise ConfigError(f"--param {exc}") from None
    engine = str(args.get("engine", ""))
    config = train_config(preset, overrides, engine=engine)  # unknown presets fail here
    check_config(config, cuda=cuda)
    return args


def pipeline_parameter_names() -> set[str]:
    import inspect

    from gmpo_kfp.pipelines.gmpo_training import gmpo_training

    return set(inspect.signature(gmpo_training.pipeline_func).parameters)


def compile_pipeline(path: str | os.PathLike, kueue: KueueConfig | None = None) -> Path:
    """Compile the pipeline to ``path`` (atomically); with ``kueue``, for that queue."""
    from kfp import compiler

    from gmpo_kfp.pipelines.gmpo_training import build_pipeline, gmpo_training

    pipeline = build_pipeline(kueue=kueue) if kueue and kueue.queue else gmpo_training

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".yaml", dir=target.parent)
    os.close(fd)
    try:
        compiler.Compiler().compile(pipeline, tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


@dataclass
class LocalRun:
    output: Path
    seconds: float
    train_metrics: dict[str, float]
    pass_at_1: float | None
    passed: bool | None
    registered_version: int | None
    manifest: Path | None
    log: Path | None = None  # kfp.local's whole output
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"output      {self.output}", f"wall time   {self.seconds:.0f} s"]
        if self.stage_seconds:
            each = ", ".join(f"{k} {v:.0f} s" for k, v in self.stage_seconds.items())
            lines.append(f"stages      {each}")
        if self.log is not None:
            lines.append(f"log         {self.log}")
        if spent := self.train_seconds():
            lines.append("train time  " + ", ".join(f"{k} {v:.0f} s" for k, v in spent.items()))
        before = self.train_metrics.get("pass_at_1_before")
        after = self.train_metrics.get("pass_at_1_after")
        if after is not None:
            b = "-" if before is None else f"{before:.3f}"
            lines.append(f"train       Pass@1 {b} -> {after:.3f} (validation)")
        if self.pass_at_1 is not None:
            gate = "passed" if self.passed else "did not pass"
            lines.append(f"evaluate    Pass@1 {self.pass_at_1:.3f}, gate {gate}")
        if self.registered_version is not None:
            lines.append(f"registered  version {self.registered_version}, manifest {self.manifest}")
        else:
            lines.append("registered  nothing (the gate did not pass)")
        return "\n".join(lines)

    def train_seconds(self) -> dict[str, float]:
        """Where the train stage's seconds went, by :data:`gmpo_kfp.engines.training.TIME_PARTS`."""
        from gmpo_kfp.engines.training import TIME_PARTS
        from gmpo_kfp.workflow.stages import SECONDS_PREFIX

        found = {p: self.train_metrics.get(f"{SECONDS_PREFIX}{p}") for p in TIME_PARTS}
        return {p: s for p, s in found.items() if s is not None}

    def to_dict(self) -> dict[str, Any]:
        """The run as JSON-ready values (what ``<output>/run-summary.json`` holds)."""
        data = dataclasses.asdict(self)
        for key in ("output", "manifest", "log"):
            data[key] = None if data[key] is None else str(data[key])
        data["train_seconds"] = self.train_seconds()
        return data


#: The file a local run leaves in its output folder: :meth:`LocalRun.to_dict`.
RUN_SUMMARY = "run-summary.json"

RUNNERS = ("subprocess", "docker")
#: A short pipeline run (the container tests, benchmarks/container_runner.py): a warm-up
#: to Pass@1 0.1, so that evaluation has right and wrong answers to tell apart, and
#: three GMPO steps.
SMOKE_OVERRIDES = (
    "sft.target_pass_at_1=0.1",
    "trainer.total_steps=3",
    "trainer.test_freq=3",
    "trainer.save_freq=3",
    "batch.train_batch_size=8",
    "batch.mini_batch_size=8",
    "batch.micro_batch_size_per_gpu=32",
)
#: What a step's container may use besides its mounts: ``/tmp`` (every cache is there,
#: the root filesystem is read-only) and a ``/dev/shm`` larger than Docker's 64 MB.
CONTAINER_TMP = {"/tmp": "rw,exec,nosuid"}
CONTAINER_SHM = "2g"


def docker_runner(out: Path, args: dict[str, Any]) -> Any:
    """``kfp.local.DockerRunner`` for the steps' CPU images, as a pod would run them.

    Read-only root filesystem, ``/tmp`` writable, the run's folders mounted at the same
    paths, the S3 variables of this environment passed on. No network, unless the run
    names an ``s3://`` URI: then the host's (the endpoint is on this machine's loopback).
    """
    import docker
    from docker.types import Mount
    from kfp import local

    try:
        client = docker.from_env()
        present = {t for image in client.images.list() for t in image.tags}
    except docker.errors.DockerException as exc:
        raise SubmitError(
            f"--runner docker: no Docker engine answers ({exc}); start one or set DOCKER_HOST"
        ) from None
    missing = sorted(set(settings.CPU_IMAGES.values()) - present)
    if missing:
        raise SubmitError(
            f"--runner docker: image {missing[0]} is not here; build the CPU images with "
            "`gmpo images build --variant cpu`"
        )
    for folder in ("pipeline-root", "workspace", "registry", "runs"):
        path = out / folder
        path.mkdir(parents=True, exist_ok=True)
        if path.stat().st_uid != settings.NON_ROOT_UID:
            path.chmod(0o777)  # the steps run as the images' user, uid 1000
    names = (*settings.S3_SECRET_ENV, "AWS_DEFAULT_REGION", "AWS_REGION")
    env = {k: os.environ[k] for k in names if k in os.environ}
    s3 = any(isinstance(v, str) and v.startswith("s3://") for v in args.values())
    binds = [Mount(str(out / f), str(out / f), type="bind") for f in ("registry", "runs")]
    return local.DockerRunner(
        network_mode="host" if s3 else "none",
        read_only=True,
        tmpfs=CONTAINER_TMP,
        shm_size=CONTAINER_SHM,
        mounts=binds,
        environment=env,
    )


def run_local(
    output: str | os.PathLike,
    *,
    preset: str = DEFAULT_PRESET,
    overrides: Sequence[str] = (),
    params: Sequence[str] = (),
    runner: str = "subprocess",
    verbose: bool = False,
) -> LocalRun:
    """Run the whole pipeline here; registry and run outputs go under ``output``.

    ``runner``: ``subprocess`` (this environment) or ``docker`` (each step in its CPU
    image, ``settings.CPU_IMAGES``; build them with ``gmpo images build --variant cpu``).
    kfp.local's output goes to ``output/run.log``; stderr gets each stage and our own
    lines (:class:`~gmpo_kfp.workflow.run_log.RunLog`), or everything with ``verbose``.
    """
    import contextlib

    from kfp import local

    from gmpo_kfp.pipelines.gmpo_training import build_pipeline, gmpo_training
    from gmpo_kfp.presets import load_preset
    from gmpo_kfp.workflow.run_log import RunLog

    if runner not in RUNNERS:
        raise SubmitError(f"--runner {runner!r}: use one of {', '.join(RUNNERS)}")
    out = Path(output).resolve()
    max_new = load_preset(preset).data.max_response_length
    args = pipeline_parameters(
        preset=preset,
        overrides=overrides,
        params=params,
        base={
            "registry_uri": f"file://{out / 'registry'}",
            "output_root": f"file://{out / 'runs'}",
            "gpus": 0,
            "max_new_tokens": max_new,
        },
        cuda=False,  # gpus=0: the local run trains on this machine's CPU
    )
    out.mkdir(parents=True, exist_ok=True)
    pipeline = gmpo_training
    if runner == "docker":
        pipeline = build_pipeline(settings.CPU_IMAGES)
        chosen = docker_runner(out, args)
    else:
        chosen = local.SubprocessRunner(use_venv=False)
    local.init(
        runner=chosen,
        raise_on_error=True,
        pipeline_root=str(out / "pipeline-root"),
        workspace_root=str(out / "workspace"),
    )
    print(
        f"gmpo: running the pipeline locally ({runner}), output {out}", file=sys.stderr, flush=True
    )
    log = RunLog(out / "run.log", verbose=verbose)
    print(f"gmpo: kfp.local's output goes to {log.path}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(log):
            # expected locally: cluster settings are no-ops, and our images are Python images
            warnings.filterwarnings(
                "ignore", message=".*have no effect in the current local runner"
            )
            warnings.filterwarnings("ignore", message=".*custom or non-Python base image")
            pipeline(**args)
    except BaseException:
        log.failed()
        raise
    finally:
        log.close()
    seconds = time.perf_counter() - start
    run = _collect(out, seconds, args.get("model_name", "gmpo-tiny"))
    run.log, run.stage_seconds = log.path, dict(log.stages)
    from gmpo_kfp import storage

    storage.write_atomic(out / RUN_SUMMARY, json.dumps(run.to_dict(), indent=2) + "\n")
    return run


def _collect(out: Path, seconds: float, model_name: str) -> LocalRun:
    """Read what the local run left: the tasks' executor outputs and the registry."""
    runs = sorted((out / "pipeline-root").iterdir(), key=lambda p: p.stat().st_mtime)

    def executor_output(task: str) -> dict[str, Any]:
        path = runs[-1] / task / "executor_output.json" if runs else None
        return json.loads(path.read_text()) if path and path.is_file() else {}

    def metrics_of(task: str) -> dict[str, float]:
        artifacts = executor_output(task).get("artifacts", {}).get("metrics", {})
        found = artifacts.get("artifacts", [{}])
        return {k: float(v) for k, v in found[0].get("metadata", {}).items()}

    train_metrics = metrics_of("train")
    from gmpo_kfp.metrics import EVAL_MEAN

    pass_at_1 = metrics_of("evaluate").get(EVAL_MEAN)
    passed = executor_output("evaluate").get("parameterValues", {}).get("Output")
    manifests = sorted((out / "registry" / model_name).glob("*/manifest.json"))
    version = manifest = None
    if manifests and passed:
        latest = max(manifests, key=lambda p: int(p.parent.name))
        version, manifest = int(latest.parent.name), latest
    return LocalRun(out, seconds, train_metrics, pass_at_1, passed, version, manifest)


def newest_uri(prefix: str) -> str:
    """The newest object under ``prefix``: the last key in order (date-stamped names sort)."""
    from gmpo_kfp import storage

    store = storage.open_store(prefix)
    keys = sorted(k for k in store.list_keys() if not k.rsplit("/", 1)[-1].startswith("."))
    if not keys:
        raise SubmitError(f"--source-prefix {prefix}: no objects there; upload the data first")
    return f"{prefix.rstrip('/')}/{keys[-1]}"


def check_host(host: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast (one line) when ``host`` does not answer a TCP connect."""
    parsed = urlparse(host if "://" in host else f"http://{host}")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SubmitError(f"--host {host}: give the KFP API URL, e.g. http://localhost:8888")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        raise SubmitError(
            f"--host {host}: cannot connect ({exc.strerror or exc}); check the URL, or "
            "port-forward the KFP API (kubectl port-forward svc/ml-pipeline 8888:8888)"
        ) from None


def with_client(
    host: str, what: str, call: Any, *, namespace: str = "", kueue: KueueConfig | None = None
) -> Any:
    """``call(kfp.Client, compiled package path)`` after a fast reachability check; a
    refusal by the server is one :class:`SubmitError` line naming ``--host``.

    ``namespace``: a multi-user KFP's profile namespace. The client authenticates as
    it does by itself: a token from ``$KF_PIPELINES_SA_TOKEN_PATH`` (the CronWorkflow's
    projected token) or the kube config. ``kueue``: compile for that queue."""
    check_host(host)
    import kfp

    kwargs = {"namespace": namespace} if namespace else {}
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(Path(tmp) / "gmpo_training.yaml", kueue)
        try:
            return call(kfp.Client(host=host, **kwargs), str(package))
        except SubmitError:
            raise
        except Exception as exc:  # the client raises ApiException, MaxRetryError, ...
            raise SubmitError(f"--host {host}: the KFP server refused the {what} ({exc})") from None


def submit(
    host: str,
    *,
    experiment: str = "gmpo",
    preset: str = DEFAULT_PRESET,
    overrides: Sequence[str] = (),
    params: Sequence[str] = (),
    run_name: str | None = None,
    wait_s: int = 0,
    source_prefix: str = "",
    namespace: str = "",
    kueue: KueueConfig | None = None,
) -> dict[str, str]:
    """Create a run of the compiled pipeline on the KFP server at ``host``, its pods
    running as :data:`~gmpo_kfp.settings.SERVICE_ACCOUNT` (the account the manifests
    give the RayJob and launcher rights), in ``namespace`` on a multi-user KFP.

    ``source_prefix``: the run trains on the newest object there (its ``source_uri``),
    looked up after every argument is checked. ``wait_s`` > 0: wait up to that long for
    the run to end; a run that does not succeed raises :class:`SubmitError` with its state.
    """
    args = pipeline_parameters(preset=preset, overrides=overrides, params=params)
    if source_prefix:
        args["source_uri"] = newest_uri(source_prefix)
        print(f"gmpo: newest data {args['source_uri']}", file=sys.stderr)

    def create(client, package):
        run = client.create_run_from_pipeline_package(
            package,
            arguments=args,
            experiment_name=experiment,
            run_name=run_name or f"gmpo-{preset}-{time.strftime('%Y%m%d-%H%M%S')}",
            namespace=namespace or None,
            service_account=settings.SERVICE_ACCOUNT,
        )
        if wait_s > 0:
            print(f"gmpo: waiting up to {wait_s} s for run {run.run_id}", file=sys.stderr)
            state = client.wait_for_run_completion(run.run_id, timeout=wait_s).state
            if state != "SUCCEEDED":
                raise SubmitError(f"run {run.run_id} ended {state}; see the KFP UI for the step")
        return run

    run = with_client(host, "run", create, namespace=namespace, kueue=kueue)
    run_id = run.run_id
    return {"run_id": run_id, "url": f"{host.rstrip('/')}/#/runs/details/{run_id}"}

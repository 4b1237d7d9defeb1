"""Multi-node verl training as a KubeRay ``RayJob`` (``ray.io/v1``), through the kubernetes client.

- :func:`build_rayjob` is pure: config in, a plain dict out. The entrypoint is the
  verl command with the mapped overrides; the cluster has a head group and a GPU
  worker group (together ``resources.nnodes`` nodes of ``resources.gpus_per_node``
  GPUs), each pod with the GPU node selector and toleration, a memory-backed
  ``/dev/shm``, the S3 secret as env, the shared volume, a non-root user and our
  loss plugin named in ``VERL_USE_EXTERNAL_MODULES`` (every Ray worker imports it).
  ``shutdownAfterJobFinishes`` and ``ttlSecondsAfterFinished`` clean up after it.
  With ``kueue.queue`` the job carries Kueue's queue (and priority-class) labels and
  is created suspended: Kueue admits the whole cluster at once by unsuspending it.
- :class:`RayJobRunner` creates the job (or picks up its own running job after a
  step retry: the name is derived from the run's output folder), polls
  ``status.jobDeploymentStatus`` / ``status.jobStatus``, streams the submitter
  pod's log (the driver's output), says "waiting for Kueue admission" while the job
  is suspended (and the time waited, every :data:`WAIT_NOTE_S`), raises
  :class:`RayJobFailed` with the job's
  reason and message, and deletes the job when the step is cancelled (SIGTERM,
  which is how KFP stops a pod, or Ctrl-C).

No KubeRay client exists on PyPI and codeflare-sdk cannot share an environment
with kfp, so this talks to the API with ``kubernetes.client.CustomObjectsApi``.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from gmpo_kfp import settings
from gmpo_kfp.cluster.manifests import s3_secret_env
from gmpo_kfp.config import ConfigError, TrainConfig

GROUP, VERSION, PLURAL = "ray.io", "v1", "rayjobs"
API_VERSION = f"{GROUP}/{VERSION}"
MAX_NAME = 47  # KubeRay derives cluster, service and pod names from the RayJob's
WORKER_GROUP = "gpu-workers"
TERMINAL_DEPLOYMENT = ("Complete", "Failed")
TERMINAL_JOB = ("SUCCEEDED", "FAILED", "STOPPED")
WAIT_NOTE_S = 60.0  # how often a job still waiting for Kueue says so
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class RayJobFailed(RuntimeError):
    """The RayJob ended without success; the message carries KubeRay's reason."""


class Cancelled(BaseException):
    """The step was asked to stop (SIGTERM)."""


def rayjob_name(key: str, prefix: str = "gmpo") -> str:
    """A stable DNS-1035 name for ``key`` (e.g. the run's output folder): a retry finds it."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    stem = re.sub(r"[^a-z0-9-]+", "-", Path(key).name.lower()).strip("-")
    room = MAX_NAME - len(prefix) - len(digest) - 2
    stem = stem[:room].strip("-")
    return f"{prefix}-{stem}-{digest}" if stem else f"{prefix}-{digest}"


def current_namespace(default: str = "default") -> str:
    """The pod's namespace (service-account file), else ``default``."""
    try:
        return NAMESPACE_FILE.read_text().strip() or default
    except OSError:
        return default


def _env(extra: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in sorted(extra.items())] + s3_secret_env()


def pod_template(
    *,
    role: str,
    image: str,
    gpus: int,
    resources: dict[str, str],
    env: dict[str, str],
    name: str,
) -> dict[str, Any]:
    """The pod template of one Ray group: GPU placement, /dev/shm, secret env, shared volume."""
    limits: dict[str, Any] = {"cpu": resources["cpu"], "memory": resources["memory"]}
    if gpus:
        limits[settings.ACCELERATOR] = gpus
    container = {
        "name": f"ray-{role}",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "env": _env(env),
        "resources": {"requests": dict(limits), "limits": limits},
        "volumeMounts": [
            {"name": settings.SHM_VOLUME, "mountPath": "/dev/shm"},
            {"name": "shared", "mountPath": settings.SHARED_MOUNT},
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.NON_ROOT_UID,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if role == "head":
        container["ports"] = [
            {"containerPort": 6379, "name": "gcs"},
            {"containerPort": settings.RAY_HEAD_PORT_DASHBOARD, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
        ]
    spec: dict[str, Any] = {
        "serviceAccountName": settings.SERVICE_ACCOUNT,
        "containers": [container],
        "volumes": [
            {
                "name": settings.SHM_VOLUME,
                "emptyDir": {"medium": "Memory", "sizeLimit": settings.SHM_SIZE},
            },
            {"name": "shared", "persistentVolumeClaim": {"claimName": settings.SHARED_CLAIM}},
        ],
    }
    if gpus:
        spec["nodeSelector"] = dict(settings.GPU_NODE_SELECTOR)
        spec["tolerations"] = [dict(settings.GPU_TOLERATION)]
    labels = {"app.kubernetes.io/name": "gmpo-kfp", "app.kubernetes.io/component": f"ray-{role}"}
    return {"metadata": {"labels": labels | {"gmpo-kfp/rayjob": name}}, "spec": spec}


def build_rayjob(
    config: TrainConfig,
    *,
    command: list[str],
    name: str,
    namespace: str,
    image: str | None = None,
    env: dict[str, str] | None = None,
    resources: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The RayJob running ``command`` (the engine's argv) for ``config`` (``resources.nnodes``
    > 1) as a plain ``ray.io/v1`` dict."""
    r = config.resources
    if r.nnodes < 2:
        raise ConfigError(
            f"resources.nnodes: {r.nnodes}; a RayJob is for 2 or more nodes (one node trains "
            "in the step's own pod)"
        )
    if r.gpus_per_node < 1:
        raise ConfigError("resources.gpus_per_node: 0; multi-node verl training needs GPUs")
    if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) or len(name) > MAX_NAME:
        raise ConfigError(
            f"RayJob name {name!r}: use at most {MAX_NAME} lowercase letters, digits and '-', "
            "starting with a letter"
        )
    image = image or settings.IMAGES["trainer"]
    res = resources or {k: str(v) for k, v in settings.TRAIN_RESOURCES.items() if k != "gpus"}
    env = {settings.VERL_MODULES_ENV: settings.VERL_PLUGIN_MODULE, **(env or {})}
    common = {"image": image, "gpus": r.gpus_per_node, "resources": res, "env": env, "name": name}
    workers = r.nnodes - 1
    return {
        "apiVersion": API_VERSION,
        "kind": "RayJob",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "gmpo-kfp",
                "app.kubernetes.io/component": "train",
                **config.kueue.labels(),
            },
        },
        "spec": {
            "entrypoint": shlex.join(command),
            # Kueue admits a suspended job (gang admission of the whole cluster); it needs
            # shutdownAfterJobFinishes, set below in any case
            "suspend": bool(config.kueue.queue),
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": settings.RAYJOB_TTL_S,
            "backoffLimit": 0,  # the KFP step's retry is the one retry policy
            "submitterPodTemplate": {
                "spec": {
                    "serviceAccountName": settings.SERVICE_ACCOUNT,
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "ray-job-submitter",
                            "image": image,
                            "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}},
                            "securityContext": {
                                "runAsNonRoot": True,
                                "runAsUser": settings.NON_ROOT_UID,
                            },
                        }
                    ],
                }
            },
            "rayClusterSpec": {
                "rayVersion": settings.RAY_VERSION,
                "headGroupSpec": {
                    "rayStartParams": {
                        "dashboard-host": "0.0.0.0",
                        "num-gpus": str(r.gpus_per_node),
                    },
                    "template": pod_template(role="head", **common),
                },
                "workerGroupSpecs": [
                    {
                        "groupName": WORKER_GROUP,
                        "replicas": workers,
                        "minReplicas": workers,
                        "maxReplicas": workers,
                        "rayStartParams": {"num-gpus": str(r.gpus_per_node)},
                        "template": pod_template(role="worker", **common),
                    }
                ],
            },
        },
    }


def api_client() -> Any:
    """A kubernetes ``ApiClient`` from the pod's service account, else ``~/.kube/config``."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as exc:
            raise RuntimeError(
                "no Kubernetes access: run in a pod with a service account or set KUBECONFIG"
            ) from exc
    return client.ApiClient()


@contextmanager
def _sigterm_cancels():
    """Turn SIGTERM into :class:`Cancelled` while waiting (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Cancelled(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class RayJobRunner:
    """Create or re-attach, watch, stream logs, fail with the reason, delete on cancel."""

    def __init__(
        self,
        client: Any,
        namespace: str,
        *,
        poll_s: float = 10.0,
        out: TextIO | None = None,
        sleep: Callable[[float], None] = time.sleep,
        wait_note_s: float = WAIT_NOTE_S,
    ):
        from kubernetes import client as k8s

        self.custom = k8s.CustomObjectsApi(client)
        self.core = k8s.CoreV1Api(client)
        self.namespace = namespace
        self.poll_s = poll_s
        self.out = out or sys.stderr
        self.sleep = sleep
        self.wait_note_s = wait_note_s
        self._log_seen: dict[str, int] = {}

    def _say(self, text: str) -> None:
        print(f"gmpo: {text}", file=self.out, flush=True)

    def get(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def delete(self, name: str, *, wait_s: float = 120.0) -> None:
        """Delete the job (its cluster and pods go with it) and wait until it is gone."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, propagation_policy="Foreground"
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
        deadline = time.monotonic() + wait_s
        while self.get(name) is not None and time.monotonic() < deadline:
            self.sleep(min(self.poll_s, 2.0))

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create the job; a running job of the same name (a retried step) is picked up."""
        from kubernetes.client.exceptions import ApiException

        name = body["metadata"]["name"]
        existing = self.get(name)
        if existing is not None:
            status = existing.get("status") or {}
            if not is_terminal(status) or status.get("jobStatus") == "SUCCEEDED":
                self._say(f"picking up RayJob {name} ({describe(status)})")
                return existing
            self._say(f"RayJob {name} ended {describe(status)}: deleting it to start over")
            self.delete(name)
        try:
            created = self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, body
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            created = self.get(name) or body  # another attempt created it a moment ago
        self._say(f"created RayJob {name} in namespace {self.namespace}")
        return created

    def stream_logs(self, name: str) -> None:
        """Print what the submitter pod (the driver's output) wrote since the last call."""
        from kubernetes.client.exceptions import ApiException

        try:
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={name}")
        except ApiException:
            return
        for pod in pods.items:
            pod_name = pod.metadata.name
            try:
                text = self.core.read_namespaced_pod_log(pod_name, self.namespace)
            except ApiException:
                continue  # not started yet
            seen = self._log_seen.get(pod_name, 0)
            if len(text) > seen:
                self.out.write(text[seen:])
                self.out.flush()
                self._log_seen[pod_name] = len(text)

    def wait(self, name: str) -> dict[str, Any]:
        """Poll until the job ends; its status on success, :class:`RayJobFailed` otherwise."""
        last = None
        waiting_since: float | None = None
        noted = 0.0
        while True:
            job = self.get(name)
            if job is None:
                raise RayJobFailed(f"RayJob {name} disappeared (deleted by someone else?)")
            status = job.get("status") or {}
            self.stream_logs(name)
            if queue := awaiting_admission(job):
                now_s = time.monotonic()
                if waiting_since is None:
                    waiting_since, noted = now_s, now_s
                    self._say(f"RayJob {name}: waiting for Kueue admission (queue {queue})")
                elif now_s - noted >= self.wait_note_s:
                    noted = now_s
                    self._say(
                        f"RayJob {name}: still waiting for Kueue admission (queue {queue}, "
                        f"{now_s - waiting_since:.0f} s)"
                    )
                last = None
                self.sleep(self.poll_s)
                continue
            if waiting_since is not None:
                waited = time.monotonic() - waiting_since
                self._say(f"RayJob {name}: admitted by Kueue after {waited:.0f} s")
                waiting_since = None
            now = describe(status)
            if now != last:
                self._say(f"RayJob {name}: {now}")
                last = now
            if is_terminal(status):
                if status.get("jobStatus") == "SUCCEEDED":
                    return status
                reason = status.get("reason") or status.get("jobStatus") or "unknown"
                message = status.get("message") or "no message"
                raise RayJobFailed(f"RayJob {name} failed ({reason}): {message}")
            self.sleep(self.poll_s)

    def run(self, body: dict[str, Any]) -> dict[str, Any]:
        """Submit (or pick up) and wait; on SIGTERM or Ctrl-C delete the job and re-raise."""
        name = body["metadata"]["name"]
        with _sigterm_cancels():
            try:
                self.submit(body)
                return self.wait(name)
            except (Cancelled, KeyboardInterrupt):
                self._say(f"cancelled: deleting RayJob {name}")
                self.delete(name, wait_s=0)
                raise


def is_terminal(status: dict[str, Any]) -> bool:
    return (
        status.get("jobDeploymentStatus") in TERMINAL_DEPLOYMENT
        or status.get("jobStatus") in TERMINAL_JOB
    )


def awaiting_admission(job: dict[str, Any]) -> str | None:
    """The Kueue queue a suspended, unfinished job waits in (before admission, or after
    Kueue preempted it); ``None`` when it is not waiting."""
    spec = job.get("spec") or {}
    if not spec.get("suspend") or is_terminal(job.get("status") or {}):
        return None
    labels = (job.get("metadata") or {}).get("labels") or {}
    return labels.get(settings.KUEUE_QUEUE_LABEL, "unknown")


def describe(status: dict[str, Any]) -> str:
    deploy = status.get("jobDeploymentStatus") or "New"
    job = status.get("jobStatus") or "-"
    return f"deployment {deploy}, job {job}"


def run_on_kuberay(
    config: TrainConfig,
    *,
    command: list[str],
    env: dict[str, str],
    client: Any = None,
    namespace: str | None = None,
    poll_s: float = 10.0,
    shared_mount: str = settings.SHARED_MOUNT,
) -> dict[str, Any]:
    """Run ``command`` for ``config`` on a RayJob named after its output folder; the final status.

    Every rank writes its checkpoint shard under ``trainer.output_dir``, and the step
    merges them afterwards, so that folder must be on the shared volume.
    """
    out = Path(config.trainer.output_dir).resolve()
    if not out.is_relative_to(Path(shared_mount).resolve()):
        raise ConfigError(
            f"trainer.output_dir: {out} is not on the shared volume; multi-node training "
            f"needs it under {shared_mount} (mounted from the {settings.SHARED_CLAIM} claim)"
        )
    namespace = namespace or current_namespace()
    name = rayjob_name(str(out))
    body = build_rayjob(config, command=command, name=name, namespace=namespace, env=env)
    return RayJobRunner(client or api_client(), namespace, poll_s=poll_s).run(body)

"""A loopback stand-in for the few Kubernetes API paths the RayJob runner calls.

It answers ``ray.io/v1`` RayJob create / get / delete and the core pod list and pod
log calls as the API server does (JSON bodies, ``Status`` objects with 404 and 409),
advances each job through a scripted sequence of statuses (one step per GET, as
KubeRay's controller would between polls), grows the submitter pod's log, and records
every request. A job created suspended stands for Kueue's queueing: it stays
``Suspended`` for ``admit_after`` GETs, then is unsuspended (Kueue's admission) and
follows the script. A real Kueue would also check the ClusterQueue's quota, inject
the flavor's node labels and tolerations, and could preempt the job later. Listens
on 127.0.0.1 only; the context manager stops it.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlparse

from tests.support.http import serving

RAYJOBS = re.compile(r"^/apis/ray\.io/v1/namespaces/([^/]+)/rayjobs(?:/([^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
POD_LOG = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")

SUCCESS = [
    {"jobDeploymentStatus": "Initializing"},
    {"jobDeploymentStatus": "Running", "jobStatus": "PENDING"},
    {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
    {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"},
]
FAILURE = [
    {"jobDeploymentStatus": "Initializing"},
    {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
    {
        "jobDeploymentStatus": "Failed",
        "jobStatus": "FAILED",
        "reason": "AppFailed",
        "message": "Job entrypoint command failed with exit code 1",
    },
]
FOREVER = [{"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}]


def status_object(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class FakeKubeAPI:
    def __init__(self, script: list[dict] | None = None, *, admit_after: int = 3):
        self.script = script or SUCCESS
        self.admit_after = admit_after
        self.queued: dict[tuple[str, str], int] = {}  # suspended jobs: GETs until admitted
        self.jobs: dict[tuple[str, str], dict] = {}
        self.step: dict[tuple[str, str], int] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def add_job(self, namespace: str, body: dict, status: dict) -> None:
        """A job that exists before the test starts (e.g. from an earlier attempt)."""
        key = (namespace, body["metadata"]["name"])
        self.jobs[key] = {**body, "status": status}
        self.step[key] = len(self.script)  # its status stays as given

    def _advance(self, key: tuple[str, str]) -> None:
        job = self.jobs[key]
        if job["spec"].get("suspend"):
            left = self.queued.setdefault(key, self.admit_after)
            job["status"] = {"jobDeploymentStatus": "Suspended", "jobStatus": "NEW"}
            if left > 0:
                self.queued[key] = left - 1
                return
            job["spec"]["suspend"] = False  # admitted: KubeRay creates the cluster next
        i = self.step[key]
        if i < len(self.script):
            self.jobs[key]["status"] = dict(self.script[i])
            self.step[key] = i + 1

    def handle(self, method: str, raw: str, body: dict | None) -> tuple[int, object]:
        url = urlparse(raw)
        path = unquote(url.path)
        with self.lock:
            self.requests.append((method, path))
            if m := RAYJOBS.match(path):
                ns, name = m.groups()
                if method == "POST" and name is None:
                    key = (ns, body["metadata"]["name"])
                    if key in self.jobs:
                        return 409, status_object(409, "AlreadyExists", "rayjobs already exists")
                    self.jobs[key] = {**body, "status": {}}
                    self.step[key] = 0
                    return 201, self.jobs[key]
                key = (ns, name)
                if key not in self.jobs:
                    return 404, status_object(404, "NotFound", f'rayjobs "{name}" not found')
                if method == "GET":
                    self._advance(key)
                    return 200, self.jobs[key]
                if method == "DELETE":
                    return 200, self.jobs.pop(key)
            if (m := PODS.match(path)) and method == "GET":
                ns = m.group(1)
                selector = parse_qs(url.query).get("labelSelector", [""])[0]
                items = [
                    {
                        "metadata": {
                            "name": f"{name}-submitter",
                            "namespace": ns,
                            "labels": {"job-name": name},
                        }
                    }
                    for (jns, name) in self.jobs
                    if jns == ns and selector == f"job-name={name}"
                ]
                return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
            if (m := POD_LOG.match(path)) and method == "GET":
                ns, pod = m.groups()
                key = (ns, pod.removesuffix("-submitter"))
                if key not in self.jobs:
                    return 404, status_object(404, "NotFound", "pod not found")
                lines = [f"driver line {i}\n" for i in range(self.step[key])]
                return 200, "".join(lines)
            return 404, status_object(404, "NotFound", f"no route {method} {path}")


@contextlib.contextmanager
def serve_kube_api(api: FakeKubeAPI) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            code, payload = api.handle(method, self.path, body)
            if isinstance(payload, str):
                data, kind = payload.encode(), "text/plain"
            else:
                data, kind = json.dumps(payload).encode(), "application/json"
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._reply("GET")

        def do_POST(self):
            self._reply("POST")

        def do_DELETE(self):
            self._reply("DELETE")

        def log_message(self, *args):
            pass

    with serving(Handler) as url:
        yield url


def api_client(url: str):
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = url
    return client.ApiClient(cfg)

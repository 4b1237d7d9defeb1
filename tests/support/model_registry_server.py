"""A loopback stand-in for the Kubeflow Model Registry REST API (v1), enough for registration.

It answers the calls ``model_registry.ModelRegistry`` makes to construct itself and to
register a model (list, find and create registered models, versions and artifacts)
the way the server does, and keeps what it was sent for the test to inspect.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

from tests.support.http import serving

BASE = "/api/model_registry/v1"


class FakeModelRegistry:
    def __init__(self):
        self.models: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.artifacts: dict[str, dict] = {}
        self.version_artifacts: dict[str, list[str]] = {}
        self.ids = itertools.count(1)
        self.lock = threading.Lock()

    def _new(self, body: dict, kind: str) -> dict:
        now = str(int(time.time() * 1000))
        obj = {
            **body,
            "id": str(next(self.ids)),
            "createTimeSinceEpoch": now,
            "lastUpdateTimeSinceEpoch": now,
        }
        obj.setdefault("customProperties", {})
        if kind in ("model", "version"):
            obj.setdefault("state", "LIVE")
        return obj

    def handle(self, method: str, path: str, body: dict | None) -> tuple[int, dict]:
        url = urlparse(path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        route = url.path.removeprefix(BASE)
        with self.lock:
            if method == "GET" and route == "/registered_models":
                items = list(self.models.values())
                return 200, {
                    "items": items,
                    "nextPageToken": "",
                    "pageSize": len(items),
                    "size": len(items),
                }
            if method == "GET" and route == "/registered_model":
                found = [m for m in self.models.values() if m["name"] == query.get("name")]
                return (200, found[0]) if found else (404, {"code": "404", "message": "not found"})
            if method == "POST" and route == "/registered_models":
                if any(m["name"] == body["name"] for m in self.models.values()):
                    return 409, {"code": "409", "message": "exists"}
                obj = self._new(body, "model")
                self.models[obj["id"]] = obj
                return 201, obj
            if method == "GET" and route == "/model_version":
                found = [
                    v
                    for v in self.versions.values()
                    if v["name"] == query.get("name")
                    and v["registeredModelId"] == query.get("parentResourceId")
                ]
                return (200, found[0]) if found else (404, {"code": "404", "message": "not found"})
            if method == "POST" and route == "/model_versions":
                obj = self._new(body, "version")
                self.versions[obj["id"]] = obj
                return 201, obj
            if (
                method == "POST"
                and route.startswith("/model_versions/")
                and route.endswith("/artifacts")
            ):
                version_id = route.split("/")[2]
                obj = self._new(body, "artifact")
                self.artifacts[obj["id"]] = obj
                self.version_artifacts.setdefault(version_id, []).append(obj["id"])
                return 200, obj
        return 404, {"code": "404", "message": f"no route {method} {route}"}


@contextlib.contextmanager
def model_registry_server() -> Iterator[tuple[str, FakeModelRegistry]]:
    state = FakeModelRegistry()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            size = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(size)) if size else None
            status, out = state.handle(self.command, self.path, body)
            data = json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _serve

        def log_message(self, *args):
            pass

    with serving(Handler) as url:
        yield url, state

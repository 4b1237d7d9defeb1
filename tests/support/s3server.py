"""A real S3 endpoint on loopback for tests: moto_server in a child process."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator

from tests.support.http import wait_until_up


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerURL(str):
    """The server's URL, carrying the server process's pid (for tests that kill it)."""

    pid: int


@contextlib.contextmanager
def moto_server(port: int | None = None, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start moto_server on 127.0.0.1, yield its URL, stop it on exit.

    ``env``: extra environment, e.g. ``INITIAL_NO_AUTH_ACTION_COUNT=0`` so that moto
    checks credentials (it accepts any by default)."""
    port = port or free_port()
    exe = shutil.which("moto_server")
    cmd = [exe] if exe else [sys.executable, "-m", "moto.server"]
    proc = subprocess.Popen(
        [*cmd, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    url = ServerURL(f"http://127.0.0.1:{port}")
    url.pid = proc.pid
    try:
        wait_until_up(url + "/moto-api/", proc, "moto_server")
        yield url
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def s3_env(endpoint: str) -> Iterator[None]:
    """The environment a pod gets from its secret: endpoint and (fake) credentials."""
    values = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

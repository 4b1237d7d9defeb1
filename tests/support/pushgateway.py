"""A real Prometheus Pushgateway (Debian's ``prometheus-pushgateway``) on loopback, for tests.

The binary comes from the system when installed, else from the Debian package fetched
once with ``apt-get download`` and unpacked with ``dpkg-deb -x`` into a cache folder (no
root needed). The server listens on 127.0.0.1 only and is stopped by the context manager.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from gmpo_kfp.settings import cache_root
from tests.support.http import wait_until_up
from tests.support.s3server import free_port

CACHE = cache_root() / "pushgateway"
PACKAGE = "prometheus-pushgateway"


def pushgateway_binary() -> str:
    found = shutil.which(PACKAGE)
    if found:
        return found
    binary = CACHE / "usr" / "bin" / PACKAGE
    if not binary.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                ["apt-get", "download", PACKAGE], cwd=tmp, check=True, capture_output=True
            )
            (deb,) = Path(tmp).glob("*.deb")
            subprocess.run(["dpkg-deb", "-x", str(deb), str(CACHE)], check=True)
    return str(binary)


@contextlib.contextmanager
def pushgateway() -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [pushgateway_binary(), f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(f"{url}/-/ready", proc, "the Pushgateway")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def scrape(url: str) -> list:
    """The metric families at ``url`` (a /metrics endpoint), parsed."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as r:
        return list(text_string_to_metric_families(r.read().decode()))


def samples(families: list, name: str) -> list:
    return [s for f in families for s in f.samples if s.name == name]

"""The container engine: the ``docker`` CLI against one daemon, and a private daemon.

:class:`Docker` runs the CLI against ``host`` (``DOCKER_HOST``'s form, e.g.
``unix:///run/docker.sock``). Builds use the classic builder (no BuildKit frontend to
pull) and never pull: a missing base is an error that says how to make it.

:class:`PrivateDaemon` starts Debian's ``dockerd`` as this project's machines run it
(root, no bridge, no iptables, ulimits set; ``containers_notes.md``) with its own
sockets and pid file, keeps its images in a data root that outlives it (a rebuild
reuses layers), and stops it by its pid. Tests and CI build and run with it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gmpo_kfp.errors import UserError

START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
DEBIAN_PACKAGES = ("docker.io", "mmdebstrap")


class EngineError(UserError, RuntimeError):
    """The container engine is missing, did not start, or refused a command."""


@dataclass(frozen=True)
class Docker:
    """The ``docker`` CLI against one daemon."""

    host: str

    def command(self, *args: str) -> list[str]:
        return ["docker", "-H", self.host, *args]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0"}

    def run(self, *args: str, check: bool = True, capture: bool = True, timeout: float = 3600):
        """``docker args...``; a failure raises :class:`EngineError` with its last lines."""
        out = subprocess.run(
            self.command(*args),
            env=self.env,
            capture_output=capture,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and out.returncode != 0:
            tail = "\n".join(((out.stdout or "") + (out.stderr or "")).strip().splitlines()[-15:])
            raise EngineError(f"docker {' '.join(args[:2])} failed ({out.returncode}):\n{tail}")
        return out

    def has_image(self, ref: str) -> bool:
        return self.run("image", "inspect", ref, check=False).returncode == 0

    def inspect(self, ref: str) -> dict:
        return json.loads(self.run("image", "inspect", ref).stdout)[0]

    def size_mb(self, ref: str) -> float:
        return self.inspect(ref)["Size"] / 1e6

    def container_run(self, ref: str, *cmd: str, options: Sequence[str] = (), **kw):
        """``docker run --rm --pull=never --network=none`` (unless options name a network)."""
        net = [] if any(o.startswith("--network") for o in options) else ["--network=none"]
        return self.run("run", "--rm", "--pull=never", *net, *options, ref, *cmd, **kw)


def find_dockerd() -> str:
    path = shutil.which("dockerd")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        install_debian_packages()
        path = shutil.which("dockerd")
        if path:
            return path
    raise EngineError(
        "no dockerd on PATH: install Docker (Debian: apt-get install -y "
        f"--no-install-recommends {' '.join(DEBIAN_PACKAGES)}) or set DOCKER_HOST to a "
        "running engine"
    )


def install_debian_packages(packages: Sequence[str] = DEBIAN_PACKAGES) -> None:
    """``apt-get install`` what is missing (root on Debian: CI's fresh machine)."""
    missing = [p for p in packages if not shutil.which("dockerd" if p == "docker.io" else p)]
    if not missing:
        return
    print(f"gmpo: installing {' '.join(missing)} (apt-get)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if subprocess.run(cmd, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        subprocess.run(cmd, env=env, capture_output=True, check=True)


def _limit(kind: int, most: int) -> str:
    hard = resource.getrlimit(kind)[1]
    n = most if hard == resource.RLIM_INFINITY else min(hard, most)
    return f"{n}:{n}"


class PrivateDaemon:
    """``dockerd`` of our own, started here and stopped by its pid.

    ``data_root`` keeps images and layers between starts (a cache; delete it to start
    afresh). Sockets, pid file and log live in a temporary folder. Use as a context
    manager, or :meth:`start` / :meth:`stop`.
    """

    def __init__(self, data_root: str | os.PathLike) -> None:
        self.data_root = Path(data_root)
        self.run_dir = Path(tempfile.mkdtemp(prefix="gmpo-dockerd-"))
        self.socket = self.run_dir / "docker.sock"
        self.log = self.run_dir / "dockerd.log"
        self.proc: subprocess.Popen | None = None

    @property
    def docker(self) -> Docker:
        return Docker(f"unix://{self.socket}")

    def start(self) -> PrivateDaemon:
        dockerd = find_dockerd()
        self.data_root.mkdir(parents=True, exist_ok=True)
        cmd = [
            dockerd,
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--storage-driver=overlay2",
            # within this process's hard limits (dockerd's defaults exceed them here)
            f"--default-ulimit=nofile={_limit(resource.RLIMIT_NOFILE, 65536)}",
            f"--default-ulimit=nproc={_limit(resource.RLIMIT_NPROC, 65536)}",
            f"--data-root={self.data_root}",
            f"--exec-root={self.run_dir / 'exec'}",
            f"--pidfile={self.run_dir / 'docker.pid'}",
            f"--host=unix://{self.socket}",
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.socket.exists() and self.docker.run("info", check=False).returncode == 0:
                return self
            time.sleep(0.5)
        self.stop()
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-10:])
        raise EngineError(f"dockerd did not start (log {self.log}):\n{tail}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> PrivateDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

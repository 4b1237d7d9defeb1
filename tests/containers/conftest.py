"""One Docker engine and the CPU images for the whole test session.

The engine is Debian's ``dockerd``, started here with its own sockets (installed with
apt-get first where it is missing and this is root on Debian: CI's fresh machine), and
stopped by its pid at the end. Its data root is a cache that outlives the session, so a
rerun reuses the images' layers; a fresh machine builds everything.

The images are built air-gapped, as this machine must: a Debian base made with
mmdebstrap, a wheelhouse made with pip on the host, builds and runs with no network and
no pull. ``GMPO_WHEEL_INDEX``: an extra index for the CPU build of torch (this
project's machines find it through pip's own configuration; elsewhere
``https://download.pytorch.org/whl/cpu``).
"""

from __future__ import annotations

import os

import pytest

from gmpo_kfp.containers.build import build_images
from gmpo_kfp.containers.engine import PrivateDaemon
from gmpo_kfp.containers.specs import images_of
from gmpo_kfp.settings import cache_root

CACHE = cache_root()


@pytest.fixture(scope="session")
def docker():
    daemon = PrivateDaemon(CACHE / "docker").start()
    old = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = daemon.docker.host  # for kfp.local's Docker client
    try:
        yield daemon.docker
    finally:
        if old is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = old
        daemon.stop()


@pytest.fixture(scope="session")
def cpu_images(docker):
    """The three CPU images, built and checked (``gmpo images build --variant cpu``)."""
    return {
        b.spec.name: b
        for b in build_images(
            docker,
            images_of("cpu"),
            base="local",
            wheels_dir=CACHE / "wheelhouse",
            make_wheels=True,
            index=os.environ.get("GMPO_WHEEL_INDEX", ""),
        )
    }


@pytest.fixture(scope="session")
def docker_run(cpu_images, tmp_path_factory):
    """``gmpo run --local --runner docker`` with a short warm-up: (LocalRun, output)."""
    from gmpo_kfp.workflow.kfp_runs import SMOKE_OVERRIDES, run_local

    out = tmp_path_factory.mktemp("docker-run") / "out"
    run = run_local(out, overrides=list(SMOKE_OVERRIDES), params=["threshold=0.0"], runner="docker")
    return run, out

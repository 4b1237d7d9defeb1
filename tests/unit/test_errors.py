"""One family of refusals: a UserError is one line and exit 2; anything else is a bug or an
environment failure and keeps its traceback (exit 1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gmpo_kfp.config import ConfigError
from gmpo_kfp.containers.build import BuildError
from gmpo_kfp.containers.engine import EngineError
from gmpo_kfp.data.schema import DataError
from gmpo_kfp.errors import UsageError, UserError
from gmpo_kfp.evaluation.evaluate import EvalError
from gmpo_kfp.evaluation.models import ModelError
from gmpo_kfp.evaluation.packaged import PackageError
from gmpo_kfp.reward import RewardError
from gmpo_kfp.storage import ChecksumMismatch, StorageError
from gmpo_kfp.workflow.kfp_runs import SubmitError
from gmpo_kfp.workflow.registry import RegistryError
from gmpo_kfp.workflow.stages import StageError

ROOT = Path(__file__).resolve().parents[2]
REFUSALS = (
    UsageError,
    ConfigError,
    DataError,
    EvalError,
    ModelError,
    RewardError,
    RegistryError,
    StorageError,
    ChecksumMismatch,
    SubmitError,
    PackageError,
    StageError,
    EngineError,
    BuildError,
)


@pytest.mark.parametrize("cls", REFUSALS, ids=lambda c: c.__name__)
def test_every_refusal_is_a_user_error_and_keeps_its_standard_base(cls):
    assert issubclass(cls, UserError)
    assert issubclass(cls, (ValueError, OSError, RuntimeError))


def run_cli(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_a_crash_that_is_not_the_users_input_keeps_its_traceback_and_exits_1(tmp_path):
    # a failure deep in training (torch's words), not a typo: the traceback stays
    out = run_cli(
        "import sys\n"
        "import gmpo_kfp.engines.training as training\n"
        "def crash(*args, **kwargs):\n"
        "    raise RuntimeError('CUDA error: an illegal memory access was encountered')\n"
        "training.train = crash\n"
        "from gmpo_kfp.cli import main\n"
        f"sys.exit(main(['train', '--output', {str(tmp_path / 'run')!r}]))\n"
    )
    assert out.returncode == 1
    assert "Traceback (most recent call last)" in out.stderr
    assert "RuntimeError: CUDA error: an illegal memory access" in out.stderr
    assert "gmpo: error:" not in out.stderr


def test_a_refusal_is_one_line_and_exits_2(tmp_path):
    out = run_cli(
        "import sys\n"
        "from gmpo_kfp.cli import main\n"
        "sys.exit(main(['train', '--set', 'optim.lr=fast', '--output', "
        f"{str(tmp_path / 'run')!r}]))\n"
    )
    assert out.returncode == 2
    assert out.stderr.strip() == "gmpo: error: optim.lr must be a number, got 'fast'"

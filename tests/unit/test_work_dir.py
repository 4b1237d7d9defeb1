"""Where the train step works: the shared volume when mounted (and writable), else a
temporary folder; a mounted volume it cannot write is an error, never a silent fallback."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from gmpo_kfp.settings import NON_ROOT_UID
from gmpo_kfp.workflow.stages import train_work_dir

ROOT = Path(__file__).resolve().parents[2]


def test_without_the_volume_a_temporary_folder(tmp_path):
    work = Path(train_work_dir("run-1", mount=str(tmp_path / "not-mounted")))
    assert work.is_dir() and work.name.startswith("gmpo-train-")
    work.rmdir()


def test_on_the_volume_a_folder_per_run_that_a_retry_finds_again(tmp_path):
    first = train_work_dir("run-1", mount=str(tmp_path))
    assert first == str(tmp_path / "run-1") and Path(first).is_dir()
    assert train_work_dir("run-1", mount=str(tmp_path)) == first


def test_a_volume_mounted_read_only_for_the_pods_user_is_a_one_line_error():
    # outside pytest's tmp_path: its folders are private to this user
    with tempfile.TemporaryDirectory(prefix="gmpo-volume-") as where:
        Path(where).chmod(0o755)
        check_unwritable(Path(where) / "volume")


def check_unwritable(volume: Path) -> None:
    volume.mkdir()
    volume.chmod(0o555)  # read and enter, no writes (as a volume without an fsGroup is)
    # root writes anywhere: as root the child drops to the pods' uid after start-up
    drop = f"os.setuid({NON_ROOT_UID})\n" if os.getuid() == 0 else ""
    code = (
        "import os, sys\n"
        "from gmpo_kfp import settings\n"
        "from gmpo_kfp.workflow.stages import StageError, train_work_dir\n"
        f"{drop}"
        "try:\n"
        f"    train_work_dir('run-1', mount={str(volume)!r})\n"
        "except StageError as exc:\n"
        "    print(exc); sys.exit(3)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert out.returncode == 3, out.stderr
    assert "mounted but not writable by uid" in out.stdout
    assert not (volume / "run-1").exists()

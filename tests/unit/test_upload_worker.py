"""The mirror's upload worker: a real child process sending real folders."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gmpo_kfp.engines.upload_worker import RemoteTraceback, UploadWorker
from gmpo_kfp.storage import StorageError, open_store, sha256_file
from tests.support.processes import ended, ends_within


def test_the_worker_sends_a_folder_and_skips_what_is_there(tmp_path):
    folder = tmp_path / "checkpoint-2"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"a" * 1000)
    (folder / "sub" / "b.json").write_text("{}")
    uri = str(tmp_path / "bucket")
    worker = UploadWorker()
    try:
        files, sent = worker.upload_dir(uri, None, folder, "checkpoint-2")
        assert sent == 2
        assert files["a.bin"] == {"size": 1000, "sha256": sha256_file(folder / "a.bin")}
        assert open_store(uri).get_bytes("checkpoint-2/sub/b.json") == b"{}"
        (folder / "a.bin").write_bytes(b"changed")
        _, sent = worker.upload_dir(uri, None, folder, "checkpoint-2")  # the same child
        assert sent == 1 and open_store(uri).get_bytes("checkpoint-2/a.bin") == b"changed"
    finally:
        worker.close()
    assert worker.proc.returncode == 0


def test_an_error_in_the_worker_is_raised_here_with_its_type_and_traceback(tmp_path):
    worker = UploadWorker()
    try:
        with pytest.raises(StorageError, match="unsupported scheme") as info:
            worker.upload_dir("gs://bucket/x", None, tmp_path, "p")
        assert isinstance(info.value.__cause__, RemoteTraceback)
        assert "open_store" in str(info.value.__cause__)
        (tmp_path / "f").write_text("x")  # the child is still there for the next folder
        assert worker.upload_dir(str(tmp_path / "b"), None, tmp_path, "p")[1] == 1
    finally:
        worker.close()


def test_a_worker_that_died_is_an_error_naming_it(tmp_path):
    worker = UploadWorker()
    try:
        worker.proc.kill()
        worker.proc.wait()
        with pytest.raises(RuntimeError, match=r"upload worker \(pid \d+\) exited with code -9"):
            worker.upload_dir(str(tmp_path / "b"), None, tmp_path, "p")
    finally:
        worker.close()


CHILD = """
import threading, time
from gmpo_kfp.engines.upload_worker import UploadWorker
def run():
    print(UploadWorker().proc.pid, flush=True)
threading.Thread(target=run).start()
time.sleep(600)
"""


def test_an_idle_worker_ends_with_its_killed_step():
    """Its input ends with the step (mid-upload, PR_SET_PDEATHSIG ends it: test_storage_faults)."""
    step = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(step.stdout.readline())
        assert not ended(pid)
    finally:
        step.kill()
        step.wait()
        step.stdout.close()
    assert ends_within(pid, 10), f"the upload worker {pid} outlived the killed step by 10 s"

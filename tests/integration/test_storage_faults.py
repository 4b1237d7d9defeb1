"""Storage under faults, against a real S3 server on loopback (moto_server).

- The store dies mid multipart upload (a proxy in front of moto exits abruptly after a
  byte budget), several times, then comes back: every attempt either completes or
  leaves nothing visible, and the retry completes with the right bytes.
- moto_server itself is killed mid upload and restarted (its state goes with it): the
  upload fails in one line, the retry after the restart completes.
- An interrupted download continues from where it stopped; a corrupted one is refused.
- A train step killed while its upload worker sends a checkpoint takes the worker with it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gmpo_kfp.storage import (
    CHUNK,
    ChecksumMismatch,
    S3Store,
    StorageError,
    partial_path,
    s3_client,
    sha256_file,
)
from tests.support.faulty_proxy import Proxy
from tests.support.processes import ends_within
from tests.support.s3server import free_port, moto_server, s3_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def few_retries(monkeypatch):
    """Two attempts per call instead of five: the same code path, seconds instead of minutes."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")


SIZE = 40 * 1024 * 1024  # five 8 MiB parts


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "weights.bin"
    block = hashlib.sha256(b"gmpo").digest() * (1024 * 1024 // 32)
    with path.open("wb") as fh:
        for i in range(SIZE // len(block)):
            fh.write(bytes([i % 251]) + block[1:])
    return path


def client_for(endpoint: str):
    old = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        return s3_client()
    finally:
        os.environ["AWS_ENDPOINT_URL"] = old


class Watcher(threading.Thread):
    """Lists the key straight from moto while an upload runs; records every size seen."""

    def __init__(self, client, bucket: str, key: str):
        super().__init__(daemon=True)
        self.client, self.bucket, self.key = client, bucket, key
        self.sizes: set[int] = set()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.key)
            except Exception:
                listing = {}
            self.sizes |= {o["Size"] for o in listing.get("Contents", [])}
            time.sleep(0.02)


def test_uploads_killed_mid_multipart_complete_on_retry_or_leave_nothing(big_file, tmp_path):
    with moto_server() as url, s3_env(url):
        direct = s3_client()
        direct.create_bucket(Bucket="faults")
        proxy = Proxy(int(url.rsplit(":", 1)[1]))
        key, kills, partial_seen = "models/m/weights.bin", 0, 0
        watcher = Watcher(direct, "faults", f"m/{key}")
        watcher.start()
        try:
            for budget in (6 * 1024 * 1024, 15 * 1024 * 1024, 30 * 1024 * 1024):
                endpoint = proxy.start(die_after_up=budget)
                store = S3Store("s3://faults/m", client=client_for(endpoint))
                with pytest.raises(StorageError) as err:
                    store.upload_file(big_file, key)
                assert "\n" not in str(err.value) and "uploading" in str(err.value)
                kills += 1
                proxy.stop()
                listing = direct.list_objects_v2(Bucket="faults", Prefix="m/")
                partial_seen += len(listing.get("Contents", []))
            store = S3Store("s3://faults/m", client=client_for(proxy.start()))
            store.upload_file(big_file, key)
        finally:
            watcher.done.set()
            watcher.join()
            proxy.stop()
        head = direct.head_object(Bucket="faults", Key=f"m/{key}")
        assert head["ContentLength"] == SIZE
        got = direct.get_object(Bucket="faults", Key=f"m/{key}")["Body"].read()
        assert hashlib.sha256(got).hexdigest() == sha256_file(big_file)
        # nothing was visible before the upload completed, and no unfinished upload is left
        assert (kills, partial_seen) == (3, 0)
        assert watcher.sizes <= {SIZE}
        assert not direct.list_multipart_uploads(Bucket="faults").get("Uploads")


def test_moto_killed_mid_upload_fails_in_one_line_and_the_retry_completes(big_file):
    port = free_port()
    with moto_server(port=port) as url, s3_env(url):
        client = s3_client()
        client.create_bucket(Bucket="killed")
        store = S3Store("s3://killed/x", client=client)
        parts = []

        def after_part(**kwargs):
            parts.append(1)
            if len(parts) == 2:  # two parts stored: the server goes down
                os.kill(url.pid, signal.SIGKILL)

        client.meta.events.register("after-call.s3.UploadPart", after_part)
        with pytest.raises(StorageError) as err:
            store.upload_file(big_file, "weights.bin")
        assert "\n" not in str(err.value)
        client.meta.events.unregister("after-call.s3.UploadPart", after_part)
    with moto_server(port=port) as url, s3_env(url):  # back, empty: a restart loses moto's state
        client = s3_client()
        client.create_bucket(Bucket="killed")
        S3Store("s3://killed/x", client=client).upload_file(big_file, "weights.bin")
        assert client.head_object(Bucket="killed", Key="x/weights.bin")["ContentLength"] == SIZE


def test_an_interrupted_download_continues_where_it_stopped(big_file, tmp_path):
    with moto_server() as url, s3_env(url):
        direct = s3_client()
        direct.create_bucket(Bucket="dload")
        S3Store("s3://dload/m", client=direct).upload_file(big_file, "weights.bin")
        proxy = Proxy(int(url.rsplit(":", 1)[1]))
        target = tmp_path / "out" / "weights.bin"
        try:
            # Parts 0 and 1 come through, every request from part 2 on is cut: however the
            # parallel ranged GETs interleave, the first attempt keeps exactly two parts.
            store = S3Store(
                "s3://dload/m", client=client_for(proxy.start(drop_range_from=2 * CHUNK))
            )
            with pytest.raises(StorageError):
                store.download_file("weights.bin", target, sha256=sha256_file(big_file))
            proxy.stop()
            assert partial_path(target).stat().st_size == 2 * CHUNK
            assert not target.exists()
            # The store back, with a budget a download from byte 0 would overrun.
            rest = SIZE - 2 * CHUNK + CHUNK // 2
            store = S3Store("s3://dload/m", client=client_for(proxy.start(die_after_down=rest)))
            store.download_file("weights.bin", target, sha256=sha256_file(big_file))
        finally:
            proxy.stop()
        assert sha256_file(target) == sha256_file(big_file)
        assert not partial_path(target).exists()


def test_a_corrupted_object_is_refused_and_nothing_is_left(tmp_path):
    with moto_server() as url, s3_env(url):
        client = s3_client()
        client.create_bucket(Bucket="bad")
        store = S3Store("s3://bad", client=client)
        store.put_bytes("f.bin", b"original")
        expected = hashlib.sha256(b"original").hexdigest()
        store.put_bytes("f.bin", b"tampered")
        with pytest.raises(ChecksumMismatch, match="refused"):
            store.download_file("f.bin", tmp_path / "f.bin", sha256=expected)
        assert not (tmp_path / "f.bin").exists()
        assert not partial_path(tmp_path / "f.bin").exists()


STEP = """
import sys
from gmpo_kfp.engines.upload_worker import UploadWorker
worker = UploadWorker()
print(worker.proc.pid, flush=True)
worker.upload_dir(sys.argv[1], None, sys.argv[2], "checkpoint-2")
"""


def test_a_killed_step_takes_its_upload_worker_with_it_mid_upload(big_file, tmp_path):
    folder = tmp_path / "checkpoint-2"
    folder.mkdir()
    os.link(big_file, folder / "weights.bin")
    with moto_server() as url, s3_env(url):
        direct = s3_client()
        direct.create_bucket(Bucket="orphan")
        proxy = Proxy(int(url.rsplit(":", 1)[1]))
        # 40 MiB at 200 kB/s a connection: half a minute, were the worker left to finish
        env = {**os.environ, "AWS_ENDPOINT_URL": proxy.start(rate=200_000)}
        step = subprocess.Popen(
            [sys.executable, "-c", STEP, "s3://orphan/m", str(folder)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        try:
            pid = int(step.stdout.readline())
            deadline = time.monotonic() + 30
            while not direct.list_multipart_uploads(Bucket="orphan").get("Uploads"):
                assert time.monotonic() < deadline, "the worker never started its upload"
                time.sleep(0.05)
            step.kill()  # mid-upload: the worker is busy sending, not reading its input
            step.wait()
            assert ends_within(pid, 10), f"the upload worker {pid} outlived the killed step by 10 s"
        finally:
            step.kill()
            step.wait()
            step.stdout.close()
            proxy.stop()

"""Transfers at scale against a real S3 server on loopback (moto_server): concurrent
parts through s3transfer with S3-checked SHA-256s, and files already held not sent again."""

from __future__ import annotations

import hashlib
import threading
import uuid

import pytest

from gmpo_kfp.storage import S3Store, s3_client, sha256_file
from gmpo_kfp.transfer import MIB, TransferSettings
from tests.support.s3server import moto_server, s3_env


@pytest.fixture(scope="module")
def bucket():
    with moto_server() as url, s3_env(url):
        name = f"scale-{uuid.uuid4().hex[:8]}"
        s3_client().create_bucket(Bucket=name)
        yield name


class Calls:
    """Counts a client's requests by operation, and the most in flight at once."""

    def __init__(self, client):
        self.lock, self.now, self.most, self.count = threading.Lock(), 0, 0, {}
        client.meta.events.register("before-call.s3", self.before)
        client.meta.events.register("after-call.s3", self.after)

    def before(self, model, **kwargs):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.count[model.name] = self.count.get(model.name, 0) + 1

    def after(self, **kwargs):
        with self.lock:
            self.now -= 1


def checkpoint(folder, seed: bytes):
    folder.mkdir(parents=True)
    block = hashlib.sha256(seed).digest() * (MIB // 32)
    for shard in range(2):
        (folder / f"shard-{shard}.bin").write_bytes(bytes([shard]) + block[1:] * 1 + block * 20)
    for i in range(12):
        (folder / "extra" / f"{i}.json").parent.mkdir(exist_ok=True)
        (folder / "extra" / f"{i}.json").write_bytes(seed + bytes([i]))


def test_a_folder_goes_up_in_concurrent_checked_parts_and_comes_back_whole(bucket, tmp_path):
    client = s3_client()
    calls = Calls(client)
    settings = TransferSettings(max_concurrency=8, part_size=5 * MIB, threshold=8 * MIB)
    store = S3Store(f"s3://{bucket}/run", client=client, transfer=settings)
    checkpoint(tmp_path / "ckpt", b"one")
    files = store.upload_dir(tmp_path / "ckpt", "global_step_1")
    assert calls.count["UploadPart"] == 2 * 5  # two 21 MiB shards in 5 MiB parts
    assert calls.count["PutObject"] == 12
    assert calls.most > 1, "requests went one at a time"
    # S3 holds a per-part SHA-256 (a composite checksum) and our full SHA-256 in metadata
    head = client.head_object(
        Bucket=bucket, Key="run/global_step_1/shard-0.bin", ChecksumMode="ENABLED"
    )
    assert head["ETag"].strip('"').endswith("-5") and head["ChecksumSHA256"]
    assert head["Metadata"]["sha256"] == files["shard-0.bin"]["sha256"]
    # a download checked against S3's own composite checksum, and one against ours
    back = store.download_checked("global_step_1/shard-0.bin", tmp_path / "a.bin")
    assert sha256_file(back) == files["shard-0.bin"]["sha256"]
    got = store.download_files(
        [(f"global_step_1/{rel}", tmp_path / "back" / rel, None) for rel in sorted(files)]
    )
    assert [sha256_file(p) for p in got] == [files[rel]["sha256"] for rel in sorted(files)]


def test_a_folder_sent_again_sends_only_what_changed(bucket, tmp_path):
    client = s3_client()
    store = S3Store(f"s3://{bucket}/again", client=client)
    checkpoint(tmp_path / "ckpt", b"two")
    store.upload_dir(tmp_path / "ckpt", "m")
    assert store.sent == 14
    calls = Calls(client)
    (tmp_path / "ckpt" / "extra" / "3.json").write_bytes(b"changed")
    store.upload_dir(tmp_path / "ckpt", "m")
    assert store.sent == 1
    assert calls.count.get("UploadPart", 0) == 0 and calls.count["PutObject"] == 1
    assert calls.count["HeadObject"] == 14
    assert store.get_bytes("m/extra/3.json") == b"changed"

"""Every download is checked, against a real S3 server on loopback (moto_server).

With a manifest (``push_dir``'s ``.gmpo-files.json``; the registry's and the checkpoint
pointer's are tested with them) each file is checked against its SHA-256. Without one
(a data file, a baseline model someone uploaded), against the checksum S3 keeps of
the object: its SHA-256, whole or per part, else its MD5 ETag, whole or per part.

A download goes wrong here the way it does in a pod: a ``.part`` file left by an
earlier attempt is continued with a ranged GET, and if it was not a prefix of the
object (the object was replaced in between), the bytes that result are wrong.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gmpo_kfp import storage
from gmpo_kfp.storage import ChecksumMismatch, S3Store, partial_path, s3_client
from tests.support.s3server import moto_server, s3_env

BIG = 20 * 1024 * 1024  # three parts of 8 MiB
PART = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def s3():
    with moto_server() as url, s3_env(url):
        client = s3_client()
        client.create_bucket(Bucket="checks")
        yield client


def upload_plain(client, key: str, data: bytes) -> None:
    """A PUT with no checksum of ours (S3 keeps its MD5 ETag)."""
    client.put_object(Bucket="checks", Key=key, Body=data)


def upload_ours(client, key: str, data: bytes, tmp_path: Path) -> None:
    """Our upload: with a SHA-256, multipart from 16 MiB on."""
    path = tmp_path / "src.bin"
    path.write_bytes(data)
    S3Store("s3://checks", client=client).upload_file(path, key)


def upload_multipart_plain(client, key: str, data: bytes) -> None:
    """A multipart upload with no checksum (S3 keeps the MD5 of its parts' MD5s)."""
    upload = client.create_multipart_upload(Bucket="checks", Key=key)["UploadId"]
    parts = []
    for number, start in enumerate(range(0, len(data), PART), 1):
        out = client.upload_part(
            Bucket="checks",
            Key=key,
            UploadId=upload,
            PartNumber=number,
            Body=data[start : start + PART],
        )
        parts.append({"ETag": out["ETag"], "PartNumber": number})
    client.complete_multipart_upload(
        Bucket="checks", Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
    )


CASES = {
    "plain-put-md5": (lambda c, k, d, t: upload_plain(c, k, d), 1000, "md5", False),
    "ours-small": (upload_ours, 1000, None, False),
    "ours-multipart-sha256": (upload_ours, BIG, "sha256", True),
    "multipart-md5": (lambda c, k, d, t: upload_multipart_plain(c, k, d), BIG, "md5", True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_download_without_a_manifest_is_checked_against_the_stores_checksum(s3, tmp_path, case):
    upload, size, algorithm, multipart = CASES[case]
    data = os.urandom(size)
    upload(s3, f"data/{case}.bin", data, tmp_path)
    checksum = S3Store("s3://checks/data", client=s3).checksum(f"{case}.bin")
    if algorithm:
        assert checksum.algorithm == algorithm
    assert (checksum.part_size == PART) if multipart else checksum.part_size is None

    # an earlier attempt's .part that is not a prefix of the object: continued, then refused
    folder = tmp_path / "dl"
    target = folder / f"{case}.bin"
    folder.mkdir()
    partial_path(target).write_bytes(os.urandom(100))
    uri = f"s3://checks/data/{case}.bin"
    with pytest.raises(ChecksumMismatch, match="differs from the store's checksum"):
        storage.fetch_file(uri, folder)
    assert not target.exists() and not partial_path(target).exists()
    # the retry downloads it whole, checked
    assert storage.fetch_file(uri, folder).read_bytes() == data


def test_fetch_dir_checks_each_file_against_the_manifest_push_dir_wrote(s3, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(os.urandom(4096))
    storage.push_dir(model, "s3://checks/run/model")
    got = storage.fetch_dir("s3://checks/run/model", tmp_path / "a")
    assert sorted(p.name for p in got.iterdir()) == ["config.json", "model.safetensors"]

    # replaced after the push (with a valid S3 checksum of its own): the manifest refuses it
    upload_plain(s3, "run/model/model.safetensors", os.urandom(4096))
    with pytest.raises(ChecksumMismatch, match="differs from the manifest"):
        storage.fetch_dir("s3://checks/run/model", tmp_path / "b")
    assert not (tmp_path / "b" / "model.safetensors").exists()

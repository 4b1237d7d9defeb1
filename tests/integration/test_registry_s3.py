"""The registry against a real S3 endpoint on loopback (moto_server), and on file://."""

from __future__ import annotations

import json
import multiprocessing
import uuid

import pytest

from gmpo_kfp.storage import ChecksumMismatch, open_store, s3_client
from gmpo_kfp.workflow import registry
from tests.support.s3server import moto_server, s3_env


@pytest.fixture(scope="module")
def endpoint():
    with moto_server() as url, s3_env(url):
        yield url


@pytest.fixture
def registry_uri(endpoint):
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    s3_client().create_bucket(Bucket=bucket)
    return f"s3://{bucket}/registry"


def model_dir(tmp_path, tag: str, size: int = 1000):
    d = tmp_path / f"model-{tag}"
    (d / "sub").mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({"tag": tag}))
    (d / "sub" / "weights.bin").write_bytes(tag.encode() * size)
    return d


def test_register_writes_files_and_a_manifest_and_moves_the_alias(tmp_path, registry_uri):
    first = registry.register_model(
        model_dir(tmp_path, "a"),
        registry_uri,
        "tiny",
        metrics={"pass@1": 0.8},
        source_run="run-1",
        config={"name": "x"},
    )
    assert (first.version, first.created) == (1, True)
    assert first.uri == f"{registry_uri}/tiny/1"
    manifest = registry.resolve(registry_uri, "tiny", "production")
    assert manifest["version"] == 1 and manifest["metrics"] == {"pass@1": 0.8}
    assert set(manifest["files"]) == {"config.json", "sub/weights.bin"}
    assert manifest["source_run"] == "run-1" and manifest["package"].startswith("gmpo-kfp ")
    second = registry.register_model(model_dir(tmp_path, "b"), registry_uri, "tiny")
    assert second.version == 2
    assert registry.resolve(registry_uri, "tiny")["version"] == 2
    out = registry.download(registry_uri, "tiny", 1, tmp_path / "dl")
    assert (out / "sub" / "weights.bin").read_bytes() == b"a" * 1000


def test_a_retry_of_the_same_content_is_the_same_version(tmp_path, registry_uri):
    d = model_dir(tmp_path, "same")
    a = registry.register_model(d, registry_uri, "m")
    b = registry.register_model(d, registry_uri, "m")
    assert (a.version, b.version, b.created) == (1, 1, False)
    assert registry.versions(open_store(registry_uri), "m") == [1]


def test_a_retry_after_a_crash_mid_upload_finishes_the_claimed_version(tmp_path, registry_uri):
    d = model_dir(tmp_path, "crash")
    store = open_store(registry_uri)
    real = store.upload_files

    def flaky(items):  # the first file goes up, then the pod dies
        real(items[:1])
        raise ConnectionError("the pod was killed")

    store.upload_files = flaky
    with pytest.raises(ConnectionError):
        registry.register_model(d, registry_uri, "m", store=store)
    with pytest.raises(registry.RegistryError, match="no alias"):
        registry.resolve(registry_uri, "m")  # nothing visible yet
    done = registry.register_model(d, registry_uri, "m")
    assert done.version == 1 and registry.resolve(registry_uri, "m")["version"] == 1


def _register(args):
    import os

    endpoint, uri, folder = args
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }
    )
    return registry.register_model(folder, uri, "race").version


def test_concurrent_registrations_keep_every_version(tmp_path, endpoint, registry_uri):
    folders = [str(model_dir(tmp_path, f"r{i}")) for i in range(4)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        got = pool.map(_register, [(endpoint, registry_uri, f) for f in folders])
    assert sorted(got) == [1, 2, 3, 4]
    assert registry.resolve(registry_uri, "race")["version"] in got
    for v in got:
        assert registry.resolve(registry_uri, "race", v)["version"] == v


def test_a_corrupted_download_is_refused(tmp_path, registry_uri):
    registry.register_model(model_dir(tmp_path, "c"), registry_uri, "m")
    store = open_store(registry_uri)
    store.put_bytes("m/1/files/sub/weights.bin", b"tampered")
    with pytest.raises(ChecksumMismatch, match="refused"):
        registry.download(registry_uri, "m", 1, tmp_path / "dl")
    assert not (tmp_path / "dl" / "sub" / "weights.bin").exists()


def test_file_registry_behaves_the_same(tmp_path):
    uri = f"file://{tmp_path / 'reg'}"
    a = registry.register_model(model_dir(tmp_path, "x"), uri, "m")
    b = registry.register_model(model_dir(tmp_path, "x"), uri, "m")
    c = registry.register_model(model_dir(tmp_path, "y"), uri, "m")
    assert (a.version, b.version, c.version, b.created) == (1, 1, 2, False)
    assert registry.resolve(uri, "m")["version"] == 2
    assert (tmp_path / "reg" / "m" / "2" / "manifest.json").is_file()


def test_list_shows_complete_versions_with_their_mean_and_aliases(tmp_path, registry_uri):
    from gmpo_kfp.metrics import EVAL_MEAN

    registry.register_model(model_dir(tmp_path, "a"), registry_uri, "m", metrics={EVAL_MEAN: 0.5})
    registry.register_model(
        model_dir(tmp_path, "b"), registry_uri, "m", metrics={EVAL_MEAN: 0.75}, source_run="r2"
    )
    store = open_store(registry_uri)
    registry.set_alias(store, "m", "staging", 1)
    # a claimed version that never got its manifest (a crash mid upload) is not listed
    store.put_bytes("m/versions/3.json", b"{}")
    rows = registry.list_versions(registry_uri, "m")
    assert [(r.version, r.mean_pass_at_1, r.aliases) for r in rows] == [
        (1, 0.5, ["staging"]),
        (2, 0.75, ["production"]),
    ]
    text = registry.format_versions("m", rows)
    assert text.splitlines()[0] == "m: 2 version(s)"
    assert "0.7500" in text.splitlines()[-1] and text.splitlines()[-1].endswith("r2")
    with pytest.raises(registry.RegistryError, match="nope: no registered version in"):
        registry.list_versions(registry_uri, "nope")


def test_show_prints_a_manifest_without_lineage_as_such(tmp_path):
    uri = f"file://{tmp_path / 'reg'}"
    registry.register_model(model_dir(tmp_path, "x"), uri, "m")
    text = registry.format_manifest(registry.resolve(uri, "m"), ["production"])
    assert text.startswith("m version 1 (production)")
    assert any(line.split()[:3] == ["lineage", "none", "recorded"] for line in text.splitlines()), (
        text
    )

"""S3 transfer settings (config, environment, defaults) and the resumable download's record."""

from __future__ import annotations

import os

import pytest

from gmpo_kfp.config import ConfigError, config_from_dict
from gmpo_kfp.transfer import (
    MIB,
    PrefixWriter,
    TransferSettings,
    TransferSettingsError,
    prefix_record,
    resumable_prefix,
)


def test_each_setting_comes_from_the_argument_else_the_environment_else_the_default():
    env = {"GMPO_S3_MAX_CONCURRENCY": "16", "GMPO_S3_PART_SIZE_MB": "64"}
    got = TransferSettings.resolve(part_size_mb=32, environ=env)
    assert (got.max_concurrency, got.part_size, got.threshold) == (16, 32 * MIB, 16 * MIB)
    assert TransferSettings.resolve(environ={}) == TransferSettings()
    boto = got.boto()
    assert (boto.max_concurrency, boto.multipart_chunksize) == (16, 32 * MIB)


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"GMPO_S3_MAX_CONCURRENCY": "many"}, r"GMPO_S3_MAX_CONCURRENCY='many' is not a number"),
        ({"GMPO_S3_MAX_CONCURRENCY": "0"}, r"storage\.max_concurrency .* give 1 or more"),
        ({"GMPO_S3_PART_SIZE_MB": "1"}, r"storage\.part_size_mb .* under S3's 5 MiB minimum"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(env, match):
    with pytest.raises(TransferSettingsError, match=match) as err:
        TransferSettings.resolve(environ=env)
    assert "\n" not in str(err.value)


def test_the_config_section_validates_and_resolves(monkeypatch):
    monkeypatch.setenv("GMPO_S3_THRESHOLD_MB", "100")
    config = config_from_dict({"storage": {"max_concurrency": 4}})
    assert config.storage.transfer() == TransferSettings(max_concurrency=4, threshold=100 * MIB)
    with pytest.raises(ConfigError, match=r"storage\.part_size_mb must be >= 5"):
        config_from_dict({"storage": {"part_size_mb": 1}})
    with pytest.raises(ConfigError, match=r"trainer\.max_ckpt_to_keep must be > 0"):
        config_from_dict({"trainer": {"max_ckpt_to_keep": 0}})


def test_out_of_order_writes_record_the_prefix_a_killed_download_resumes_from(tmp_path):
    part = tmp_path / ".w.bin.part"
    writer = PrefixWriter(part, part_size=4)
    for offset, data in ((4, b"efgh"), (12, b"mnop"), (0, b"abcd")):  # s3transfer's order
        writer.seek(offset)
        writer.write(data)
    assert writer.prefix == 8 and prefix_record(part).read_text() == "8"
    # killed here: no close. The file has a hole at 8-12; the next attempt keeps 0-8.
    assert os.path.getsize(part) == 16
    assert resumable_prefix(part) == 8
    assert part.read_bytes() == b"abcdefgh" and not prefix_record(part).exists()


def test_a_failed_download_is_cut_to_its_prefix_and_a_complete_one_drops_its_record(tmp_path):
    part = tmp_path / ".w.part"
    writer = PrefixWriter(part, part_size=1024)
    writer.write(b"abc")
    writer.seek(10)
    writer.write(b"xyz")
    writer.close(complete=False)
    assert part.read_bytes() == b"abc" and resumable_prefix(part) == 3
    writer = PrefixWriter(part, part_size=1024)
    writer.write(b"all")
    writer.close(complete=True)
    assert not prefix_record(part).exists()
    # a partial written in order by the sequential ranged GET: all of it is a prefix
    assert resumable_prefix(part) == 3
    assert resumable_prefix(tmp_path / "absent") == 0

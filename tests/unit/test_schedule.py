"""gmpo schedule's cron conversion, its one-line errors, and submit's newest-data lookup."""

from __future__ import annotations

import pytest

from gmpo_kfp.cluster.schedule import kfp_cron
from gmpo_kfp.config import ConfigError
from gmpo_kfp.workflow.kfp_runs import SubmitError, newest_uri
from tests.unit.test_cli import gmpo


@pytest.mark.parametrize(
    ("five", "six"),
    [
        ("0 3 * * *", "0 0 3 * * *"),
        ("*/15 * * * *", "0 */15 * * * *"),
        ("30 2 1,15 * MON-FRI", "0 30 2 1,15 * MON-FRI"),
        ("0 0 ? JAN-MAR 0", "0 0 0 ? JAN-MAR 0"),
        ("@daily", "0 0 0 * * *"),
        ("  5 4 * * 6  ", "0 5 4 * * 6"),
    ],
)
def test_five_fields_become_kfp_six(five, six):
    assert kfp_cron(five) == six


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("0 3 * *", "give five fields"),
        ("0 0 3 * * *", "give five fields"),
        ("60 * * * *", "minute 60 is outside 0-59"),
        ("0 24 * * *", "hour 24 is outside 0-23"),
        ("0 0 0 * *", "day of month 0 is outside 1-31"),
        ("0 0 * 13 *", "month 13 is outside 1-12"),
        ("0 0 * * 7", "day of week 7 is outside 0-6"),
        ("0 0 * * FUNDAY", "day of week 'FUNDAY' is not a number or SUN-SAT"),
        ("*/0 * * * *", "minute step 0"),
        ("0 5-2 * * *", "runs backwards"),
        ("? * * * *", "'?' only stands for a day"),
        ("0 3 * * a b", "give five fields"),
    ],
)
def test_bad_cron_is_a_config_error_naming_the_option(cron, says):
    with pytest.raises(ConfigError) as err:
        kfp_cron(cron)
    assert str(err.value).startswith("--cron ") and says in str(err.value)


def test_schedule_with_a_bad_cron_is_one_line_and_contacts_nothing():
    # port 9 (discard) on loopback: the cron is refused before any connection is tried
    out = gmpo("schedule", "--host", "http://127.0.0.1:9", "--cron", "0 3 * * 8")
    assert out.returncode == 2
    assert out.stderr.strip() == "gmpo: error: --cron '0 3 * * 8': day of week 8 is outside 0-6"


def test_images_prints_one_source():
    from gmpo_kfp.settings import IMAGES

    out = gmpo("images", "runtime")
    assert out.returncode == 0 and out.stdout.strip() == IMAGES["runtime"]
    bad = gmpo("images", "gpu")
    assert bad.returncode == 2 and "runtime, trainer, eval" in bad.stderr


def test_newest_uri_is_the_last_key_in_order(tmp_path):
    for name in ("2026-11-01/train.parquet", "2026-11-28/train.parquet", "2026-02-30/x.parquet"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert newest_uri(f"file://{tmp_path}") == f"file://{tmp_path}/2026-11-28/train.parquet"
    with pytest.raises(SubmitError, match=r"--source-prefix .*: no objects there"):
        newest_uri(f"file://{tmp_path}/empty")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        # the train step's engine refuses it: refused by submit and schedule before anything
        (["--set", "engine=verl"], "optim.lr_schedule=linear is not available in verl"),
        (["--param", "engine=verl"], "optim.lr_schedule=linear is not available in verl"),
        (
            ["--preset", "gmpo-qwen2.5-7b-math", "--set", "verl.checkpoint_contents=[hf_model]"],
            "verl.checkpoint_contents: without model, optimizer, extra a retried step",
        ),
        (["--set", "batch.micro_batch_size_per_gpu=3"], "batch.micro_batch_size_per_gpu (3)"),
    ],
)
@pytest.mark.parametrize("command", ["submit", "schedule"])
def test_submit_and_schedule_check_the_train_steps_effective_config_first(command, argv, says):
    # an S3 prefix that would hang on connects, a host that refuses: neither is contacted
    extra = ["--source-prefix", "s3://no-bucket/data/"] if command == "submit" else []
    cron = ["--cron", "0 3 * * *"] if command == "schedule" else []
    out = gmpo(
        command,
        "--host",
        "http://127.0.0.1:9",
        *cron,
        *extra,
        *argv,
        env={"AWS_ENDPOINT_URL": "http://192.0.2.1:9", "AWS_MAX_ATTEMPTS": "5"},
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert says in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr

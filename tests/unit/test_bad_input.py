"""The README's bad-input table, row by row, through the CLI: one line naming the input and
the fix, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gmpo_kfp.data.arithmetic import arithmetic_rows
from gmpo_kfp.data.schema import write_rl_parquet
from tests.support.s3server import free_port, moto_server

ROOT = Path(__file__).resolve().parents[2]

#: README row name -> (argv, what the one line must say)
CASES = {
    "unknown preset": (
        ["train", "--preset", "tiny-gpu"],
        "unknown preset 'tiny-gpu'; known presets:",
    ),
    "unknown --set key": (["train", "--set", "optim.lrr=1e-6"], "unknown config key optim.lrr"),
    "wrong value type": (
        ["train", "--set", "optim.lr=fast"],
        "optim.lr must be a number, got 'fast'",
    ),
    "clip ratio <= 0": (
        ["train", "--set", "algorithm.clip_ratio_low=0"],
        "algorithm.clip_ratio_low must be > 0",
    ),
    "missing data file": (
        ["train", "--set", "data.task=", "--set", "data.train_files=[{tmp}/missing.parquet]"],
        "data.train_files: {tmp}/missing.parquet does not exist",
    ),
    "empty data file": (
        ["train", "--set", "data.task=", "--set", "data.train_files=[{tmp}/empty.parquet]"],
        "data.train_files: data file {tmp}/empty.parquet: no rows",
    ),
    "parquet without the required columns": (
        ["train", "--set", "data.task=", "--set", "data.train_files=[{tmp}/nocols.parquet]"],
        "data.train_files: data file {tmp}/nocols.parquet lacks the columns data_source,",
    ),
    "model directory without weights": (
        ["train", "--set", "model.path={tmp}/noweights"],
        "model.path: {tmp}/noweights has no weights",
    ),
    "unreachable KFP host": (
        ["submit", "--host", "http://127.0.0.1:{closed}"],
        "--host http://127.0.0.1:{closed}: cannot connect",
    ),
    "unreachable S3 endpoint": (
        ["submit", "--host", "http://127.0.0.1:{closed}", "--source-prefix", "s3://data/gsm8k/"],
        "s3://data/gsm8k/: listing failed (Could not connect to the endpoint URL",
    ),
    "bad S3 credentials": (
        ["submit", "--host", "http://127.0.0.1:{closed}", "--source-prefix", "s3://data/gsm8k/"],
        "was refused (InvalidAccessKeyId); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    ),
    "invalid cron": (
        ["schedule", "--host", "http://127.0.0.1:{closed}", "--cron", "0 3 * *"],
        "--cron '0 3 * *': give five fields",
    ),
    "unknown registered model": (
        ["registry", "list", "nope", "--registry", "{tmp}/registry"],
        "nope: no registered version in {tmp}/registry; check the name",
    ),
    "invalid Kueue queue": (
        ["submit", "--host", "http://127.0.0.1:{closed}", "--queue", "Team_A"],
        "--queue must be a Kubernetes name: at most 63 lowercase letters",
    ),
    "LoRA dropout on verl": (
        [
            *("train", "--set", "engine=verl", "--set", "optim.lr_schedule=constant"),
            *("--set", "lora.rank=8", "--set", "lora.dropout=0.1"),
        ],
        "lora.dropout=0.1 is not available in verl (its FSDP LoRA has no dropout)",
    ),
    "unknown register_weights": (
        ["submit", "--host", "http://127.0.0.1:{closed}", "--param", "register_weights=lora"],
        "--param register_weights: 'lora' is not one of merged, adapter",
    ),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    full = write_rl_parquet(arithmetic_rows("test", limit=2), tmp / "full.parquet")
    pq.write_table(pq.read_table(full).slice(0, 0), tmp / "empty.parquet")  # columns, no rows
    pq.write_table(pa.table({"prompt": ["1+1="]}), tmp / "nocols.parquet")
    (tmp / "noweights").mkdir()
    (tmp / "noweights" / "config.json").write_text("{}")
    return tmp


@pytest.fixture(scope="module")
def strict_s3():
    """moto checking credentials: the keys below are unknown to it."""
    with moto_server(env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as url:
        yield url


def run_case(name, files, tmp_path, strict_s3):
    argv, says = CASES[name]
    fill = {"tmp": str(files), "closed": str(free_port())}
    env = {**os.environ, "AWS_MAX_ATTEMPTS": "1", "AWS_REGION": "us-east-1"}
    env |= {"AWS_ACCESS_KEY_ID": "AKIDNOTAKEY", "AWS_SECRET_ACCESS_KEY": "not-a-secret"}
    if name == "unreachable S3 endpoint":
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{fill['closed']}"
    elif name == "bad S3 credentials":
        env["AWS_ENDPOINT_URL"] = strict_s3
    out_dir = tmp_path / "out"
    args = [a.format(**fill) for a in argv]
    if args[0] == "train":
        args += ["--output", str(out_dir), "--no-progress"]
    proc = subprocess.run(
        [sys.executable, "-m", "gmpo_kfp", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    return proc, says.format(**fill), out_dir


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2_and_nothing_written(name, files, tmp_path, strict_s3):
    proc, says, out_dir = run_case(name, files, tmp_path, strict_s3)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("gmpo: error:")]
    assert proc.returncode == 2, proc.stderr
    assert len(errors) == 1 and says in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out_dir.exists(), sorted(p.name for p in out_dir.rglob("*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_readme_table_has_every_row():
    text = (ROOT / "README.md").read_text()
    table = text.split("## Bad input", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    names = [re.split(r"\s*\|\s*", row)[1] for row in rows[1:]]
    assert names == list(CASES)
    for row, (_argv, says) in zip(rows[1:], CASES.values(), strict=True):
        assert says.split("{")[0][:30].strip() in row, row
        assert row.rstrip().endswith("| 2 |")

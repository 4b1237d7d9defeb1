"""The stages against a real S3 endpoint on loopback: sources, checkpoints, models, registry."""

from __future__ import annotations

import json
import uuid

import pytest

from gmpo_kfp.data.schema import DataError, read_rl_parquet
from gmpo_kfp.storage import StorageError, open_store, s3_client
from gmpo_kfp.workflow import stages
from tests.support.s3server import moto_server, s3_env

SHORT = [
    "sft.enabled=false",
    "trainer.test_freq=-1",
    "trainer.val_before_train=false",
    "trainer.save_freq=2",
    "batch.train_batch_size=8",
    "batch.mini_batch_size=8",
    "batch.micro_batch_size_per_gpu=32",
]


def prepare_arithmetic(tmp_path, limit: int = 64) -> None:
    """The arithmetic task's parquet files, ``t.parquet`` and ``v.parquet``, in ``tmp_path``."""
    stages.prepare_data(
        source="arithmetic",
        limit=limit,
        train_path=str(tmp_path / "t.parquet"),
        val_path=str(tmp_path / "v.parquet"),
    )


@pytest.fixture(scope="module")
def bucket():
    with moto_server() as url, s3_env(url):
        name = f"gmpo-{uuid.uuid4().hex[:8]}"
        s3_client().create_bucket(Bucket=name)
        yield f"s3://{name}"


def test_prepare_reads_a_source_from_s3_and_splits_off_validation(tmp_path, bucket):
    records = [{"question": f"What is {i}+1?", "answer": f"so\n#### {i + 1}"} for i in range(20)]
    src = tmp_path / "gsm8k.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    open_store(f"{bucket}/sources").upload_file(src, "gsm8k.jsonl")
    meta = stages.prepare_data(
        source="gsm8k",
        source_uri=f"{bucket}/sources/gsm8k.jsonl",
        train_path=str(tmp_path / "t.parquet"),
        val_path=str(tmp_path / "v.parquet"),
        val_fraction=0.25,
    )
    assert (meta["train"]["rows"], meta["val"]["rows"]) == (15, 5)
    train, val = read_rl_parquet(tmp_path / "t.parquet"), read_rl_parquet(tmp_path / "v.parquet")
    assert not {r["extra_info"]["index"] for r in train} & {r["extra_info"]["index"] for r in val}
    assert {r["extra_info"]["split"] for r in val} == {"test"}
    with pytest.raises(StorageError):
        stages.prepare_data(
            source="gsm8k",
            source_uri=f"{bucket}/sources/missing.jsonl",
            train_path=str(tmp_path / "a"),
            val_path=str(tmp_path / "b"),
        )
    with pytest.raises(DataError, match="source_uri: empty"):
        stages.prepare_data(
            source="gsm8k", train_path=str(tmp_path / "a"), val_path=str(tmp_path / "b")
        )


def test_a_retried_train_step_resumes_from_the_checkpoint_in_s3(tmp_path, bucket):
    prepare_arithmetic(tmp_path)
    output = f"{bucket}/runs/r1"
    kwargs = {
        "preset": "tiny-cpu",
        "train_path": str(tmp_path / "t.parquet"),
        "val_path": str(tmp_path / "v.parquet"),
        "output_uri": output,
    }
    first = stages.train_stage(
        overrides=[*SHORT, "trainer.total_steps=2"],
        work_dir=str(tmp_path / "w1"),
        curves_path=str(tmp_path / "c1.md"),
        **kwargs,
    )
    assert first["restored_step"] is None
    store = open_store(output)
    latest = json.loads(store.get_bytes("checkpoints/latest.json"))
    assert latest["checkpoint"] == "checkpoint-2"
    assert "model/model.safetensors" in set(store.list_keys("model/"))
    # the retry runs in a fresh pod: an empty work dir, the same output URI
    second = stages.train_stage(
        overrides=[*SHORT, "trainer.total_steps=4"],
        work_dir=str(tmp_path / "w2"),
        curves_path=str(tmp_path / "c2.md"),
        **kwargs,
    )
    assert second["restored_step"] == 2 and second["metrics"]["steps"] == 4.0
    steps = [json.loads(line)["step"] for line in (tmp_path / "w2" / "metrics.jsonl").open()]
    assert steps == [1, 2, 3, 4]

    out = stages.evaluate_stage(
        model_uri=second["model_uri"],
        eval_paths=[str(tmp_path / "v.parquet")],
        work_dir=str(tmp_path / "e"),
        report_path=str(tmp_path / "r.md"),
        threshold=0.0,
        max_new_tokens=4,
    )
    assert out["passed"] and 0.0 <= out["mean"] <= 1.0
    reg = stages.register_stage(
        model_uri=second["model_uri"],
        registry_uri=f"{bucket}/registry",
        name="tiny",
        work_dir=str(tmp_path / "g"),
        metrics={"m": out["mean"]},
    )
    assert reg["version"] == 1 and reg["manifest_uri"] == f"{bucket}/registry/tiny/1/manifest.json"


def test_submit_source_prefix_picks_the_newest_object_in_s3(bucket):
    from gmpo_kfp.workflow.kfp_runs import newest_uri

    store = open_store(f"{bucket}/data/gsm8k")
    for day in ("2026-11-27", "2026-11-29", "2026-11-28"):
        store.put_bytes(f"{day}/train.parquet", day.encode())
    assert newest_uri(f"{bucket}/data/gsm8k/") == f"{bucket}/data/gsm8k/2026-11-29/train.parquet"

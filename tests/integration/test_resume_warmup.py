"""A retried train step in an empty work folder, with the warm-up on: it resumes from the
mirrored state alone (the latest checkpoint and the warm-up model), on both engines.

The warm-up model is the start of the resumed run: its policy's first weights, the
reference model of the KL term and the tokenizer. Without it a retry would either
train the warm-up again or resume on top of the base model, with the base model as
reference: a different run that looks like the same one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gmpo_kfp.config import ConfigError
from gmpo_kfp.workflow import stages
from tests.integration.test_stages_s3 import SHORT

WARMUP = [
    *SHORT,
    "sft.enabled=true",
    "sft.max_steps=5",
    "sft.eval_every=5",
    "sft.eval_prompts=16",
    "optim.lr_schedule=constant",
    "optim.warmup_steps=0",
    # the reference model matters: a resume against the wrong one ends elsewhere
    "algorithm.use_kl_loss=true",
    "algorithm.kl_beta=0.5",
]
VERL = ["engine=verl", "batch.log_prob_micro_batch_size_per_gpu=32"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("data")
    paths = {"train_path": str(folder / "t.parquet"), "val_path": str(folder / "v.parquet")}
    stages.prepare_data(source="arithmetic", limit=64, **paths)
    return paths


def step(tmp_path: Path, data: dict, output: Path, work: str, steps: int, extra=()) -> dict:
    return stages.train_stage(
        preset="tiny-cpu",
        overrides=[*WARMUP, *extra, f"trainer.total_steps={steps}"],
        output_uri=str(output),
        work_dir=str(tmp_path / work),
        curves_path=str(tmp_path / f"{work}.md"),
        **data,
    )


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_trl_retry_in_an_empty_folder_resumes_with_the_mirrored_warmup_model(tmp_path, data):
    straight = step(tmp_path, data, tmp_path / "straight", "w0", 4)
    assert straight["metrics"]["steps"] == 4

    output = tmp_path / "retried"
    step(tmp_path, data, output, "w1", 2)  # the attempt that "died" after checkpoint 2
    assert (output / "sft-model.json").is_file()
    retried = step(tmp_path, data, output, "w2", 4)  # a fresh pod: an empty work folder
    assert retried["restored_step"] == 2
    # RL resumed on the warm-up model it started from, restored (not trained again)
    assert_same(weights(tmp_path / "w2" / "sft-model"), weights(tmp_path / "w1" / "sft-model"))
    assert not (tmp_path / "w2" / "sft").exists(), "the warm-up ran again"
    # and ended with the weights of the uninterrupted run
    assert_same(weights(tmp_path / "w2" / "model"), weights(tmp_path / "w0" / "model"))


def test_a_warmup_model_kept_from_a_local_run_is_mirrored_before_rl(tmp_path, data):
    step(tmp_path, data, tmp_path / "first", "w1", 2)  # warm-up trained, mirrored to first/
    # the same folder trains on into another output URI: its kept warm-up model goes there
    step(tmp_path, data, tmp_path / "second", "w1", 4)
    assert (tmp_path / "second" / "sft-model.json").is_file()
    assert_same(weights(tmp_path / "second" / "sft-model"), weights(tmp_path / "w1" / "sft-model"))


def test_a_checkpoint_without_its_warmup_model_is_refused(tmp_path, data):
    output = tmp_path / "out"
    step(tmp_path, data, output, "w1", 2)
    (output / "sft-model.json").unlink()  # a mirror that never held the warm-up model
    with pytest.raises(ConfigError, match=r"trainer.resume=auto: checkpoint step 2 .* warm-up"):
        step(tmp_path, data, output, "w2", 4)


@pytest.mark.slow
def test_verl_retry_in_an_empty_folder_resumes_with_the_mirrored_warmup_model(tmp_path, data):
    output = tmp_path / "retried"
    step(tmp_path, data, output, "w1", 2, VERL)
    retried = step(tmp_path, data, output, "w2", 4, VERL)
    assert retried["restored_step"] == 2
    assert retried["metrics"]["steps"] == 4
    assert_same(weights(tmp_path / "w2" / "sft-model"), weights(tmp_path / "w1" / "sft-model"))
    assert not (tmp_path / "w2" / "sft").exists(), "the warm-up ran again"
    # verl's actor and reference both loaded the restored warm-up model
    assert retried["base_model"] == str(tmp_path / "w2" / "sft-model")

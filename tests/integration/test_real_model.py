"""A real pretrained LLM: SmolLM2-135M-Instruct from its GGUF file (gmpo_kfp.evaluation.packaged),
dequantised once, trained a few GMPO steps on TRL, and scored on real GSM8K problems."""

from __future__ import annotations

import json
import os

import pytest

from gmpo_kfp.config import apply_overrides, with_values
from gmpo_kfp.data.importers import import_source
from gmpo_kfp.data.schema import write_rl_parquet
from gmpo_kfp.engines.training import train
from gmpo_kfp.evaluation import models
from gmpo_kfp.evaluation.evaluate import evaluate
from gmpo_kfp.evaluation.packaged import GSM8K_TEST, SMOLLM2_135M_INSTRUCT, fetch, sha256_of
from gmpo_kfp.presets import load_preset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    gguf = fetch(SMOLLM2_135M_INSTRUCT)
    cache = tmp_path_factory.mktemp("gguf-cache")
    return gguf, models.dequantise_gguf(gguf, cache)


def test_gguf_model_is_dequantised_once_with_its_sha256(smollm2):
    gguf, folder = smollm2
    source = json.loads((folder / models.GGUF_SOURCE).read_text())
    assert source["sha256"] == sha256_of(gguf) and folder.name.endswith(source["sha256"][:12])
    model, tokenizer = models.load_model_and_tokenizer(str(folder))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert tokenizer.chat_template
    # the file's own special tokens (transformers' GGUF tokenizer took <|im_start|> as EOS)
    assert tokenizer.eos_token == "<|im_end|>" == tokenizer.pad_token
    assert tokenizer.eos_token_id == model.generation_config.eos_token_id
    assert source["format"] == models.GGUF_FORMAT
    assert tokenizer.clean_up_tokenization_spaces is False  # byte-level BPE: text as decoded
    stamp = os.stat(folder / "config.json").st_mtime_ns
    assert models.dequantise_gguf(gguf, folder.parent) == folder  # cached: not made again
    assert os.stat(folder / "config.json").st_mtime_ns == stamp


def test_a_folder_holding_one_gguf_file_names_it(smollm2, tmp_path):
    gguf, _ = smollm2
    assert models.gguf_file(str(gguf.parent)) == gguf
    (tmp_path / "a.gguf").write_bytes(b"")
    (tmp_path / "b.gguf").write_bytes(b"")
    with pytest.raises(models.ModelError, match="several GGUF files"):
        models.gguf_file(str(tmp_path))


def test_a_few_gmpo_steps_and_real_problems_on_the_real_model(smollm2, tmp_path):
    """Two GMPO steps on 4 real GSM8K problems, validated and scored on 4 others."""
    _, folder = smollm2
    rows = import_source("gsm8k", fetch(GSM8K_TEST), split="test", limit=8)
    train_file = write_rl_parquet(rows[:4], tmp_path / "train.parquet")
    val_file = write_rl_parquet(rows[4:], tmp_path / "val.parquet")
    config = apply_overrides(
        load_preset("tiny-cpu"),
        [
            f"model.path={folder}",
            f"trainer.output_dir={tmp_path / 'run'}",
            "sft.enabled=false",
            "data.max_prompt_length=256",
            "data.max_response_length=8",
            "trainer.total_steps=2",
            "trainer.test_freq=2",
            "trainer.save_freq=100",  # no checkpoint: its Adam state alone is 1 GB
            "trainer.val_before_train=false",
            "batch.train_batch_size=2",
            "batch.mini_batch_size=2",
            "batch.micro_batch_size_per_gpu=4",
            "optim.warmup_steps=0",
        ],
    )
    files = {"data.train_files": [str(train_file)], "data.val_files": [str(val_file)]}
    config = with_values(config, {**files, "data.task": ""})
    result = train(config, progress=False)
    assert result.steps == 2
    saved, _ = models.load_model_and_tokenizer(result.model_dir)
    assert type(saved).__name__ == "LlamaForCausalLM"  # the output layer came back too
    scored = evaluate(result.model_dir, [val_file], max_new_tokens=16, backend="transformers")
    assert scored.problems == 4 and 0.0 <= scored.mean <= 1.0
    assert list(scored.pass_at_1) == ["openai/gsm8k"]

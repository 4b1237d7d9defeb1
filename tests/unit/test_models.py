"""The tiny offline model and its character tokenizer, loaded by path like any HF model."""

from __future__ import annotations

import pytest

from gmpo_kfp.evaluation.models import (
    ModelError,
    build_char_tokenizer,
    build_tiny_model,
    check_model_dir,
    load_model_and_tokenizer,
    resolve_model_path,
)


def test_char_tokenizer_round_trips_and_renders_chat():
    tok = build_char_tokenizer()
    ids = tok("07+45=", add_special_tokens=False)["input_ids"]
    assert len(ids) == 6 and tok.decode(ids) == "07+45="
    assert tok.decode([*tok("52")["input_ids"], tok.eos_token_id], skip_special_tokens=True) == "52"
    prompt = [{"role": "user", "content": "07+45="}]
    assert tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True) == "07+45="
    full = [*prompt, {"role": "assistant", "content": "52"}]
    assert tok.apply_chat_template(full, tokenize=False) == "07+45=52<eos>"
    # byte-level BPE: a character outside the vocabulary gets no token
    assert tok("x?", add_special_tokens=False)["input_ids"] == []


def test_tiny_model_is_saved_and_loaded_by_path(tmp_path):
    path = build_tiny_model(tmp_path / "tiny")
    assert not list(tmp_path.glob(".tiny.*"))  # no staging folder left behind
    model, tok = load_model_and_tokenizer(str(path))
    assert model.config.model_type == "qwen2"
    assert 400_000 < sum(p.numel() for p in model.parameters()) < 700_000
    assert model.config.tie_word_embeddings and model.config.vocab_size == len(tok)
    again, _ = load_model_and_tokenizer(str(build_tiny_model(tmp_path / "b")))
    for a, b in zip(model.parameters(), again.parameters(), strict=True):
        assert (a == b).all()  # seeded: the same weights every time


def test_resolve_builds_tiny_once_and_passes_other_paths_through(tmp_path):
    first = resolve_model_path("tiny", tmp_path)
    stamp = (tmp_path / "tiny-model" / "model.safetensors").stat().st_mtime_ns
    assert resolve_model_path("tiny", tmp_path) == first
    assert (tmp_path / "tiny-model" / "model.safetensors").stat().st_mtime_ns == stamp
    assert resolve_model_path("Qwen/Qwen2.5-Math-7B", tmp_path) == "Qwen/Qwen2.5-Math-7B"


def test_model_directory_errors_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(ModelError, match=r"model.path: .*does not exist"):
        check_model_dir(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"no config\.json"):
        check_model_dir(str(tmp_path / "empty"))
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(ModelError, match=r"has no weights .*save_pretrained"):
        check_model_dir(str(tmp_path / "empty"))
    check_model_dir("Qwen/Qwen2.5-Math-7B")  # a hub id is not checked locally


def test_char_tokenizer_keeps_newlines_and_reloads_as_itself(tmp_path):
    """AutoTokenizer rebuilds a Qwen2 folder's tokenizer by class: it must stay the same."""
    from transformers import AutoTokenizer

    tok = build_char_tokenizer()
    text = "12+3=\n4 5"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text) and tok.decode(ids) == text
    again = AutoTokenizer.from_pretrained(build_tiny_model(tmp_path / "tiny"))
    assert again(text, add_special_tokens=False)["input_ids"] == ids
    assert again.get_vocab() == tok.get_vocab()


def test_tiny_model_folder_is_a_causal_lm(tmp_path):
    import json

    path = build_tiny_model(tmp_path / "tiny")
    assert json.loads((path / "config.json").read_text())["architectures"] == ["Qwen2ForCausalLM"]


def test_untied_output_layer_survives_save_and_reload(tmp_path):
    """A model whose lm_head is its own weight (Qwen2.5-7B, most large models)."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from gmpo_kfp.evaluation.models import save_model_dir

    tok = build_char_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    save_model_dir(model, tok, tmp_path / "untied")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "untied")
    assert type(again).__name__ == "Qwen2ForCausalLM"
    ours, theirs = model.state_dict(), again.state_dict()
    assert ours.keys() == theirs.keys() and "lm_head.weight" in theirs
    for name, tensor in ours.items():
        assert torch.equal(tensor, theirs[name]), name

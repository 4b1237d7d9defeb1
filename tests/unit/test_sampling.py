"""Plain sampling (gmpo_kfp.engines.sampling) against transformers' generate: the same tokens."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from gmpo_kfp.engines.sampling import distinct_rows, sample, supported
from gmpo_kfp.evaluation.models import build_tiny_model, load_model_and_tokenizer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model, tokenizer = load_model_and_tokenizer(
        str(build_tiny_model(tmp_path_factory.mktemp("m") / "t"))
    )
    return model.eval(), tokenizer


def prompts(tokenizer, seed, repeats=1):
    g = torch.Generator().manual_seed(seed)
    pairs = torch.randint(0, 120, (24 // repeats, 2), generator=g).tolist()
    texts = [f"{a}+{b}=" for a, b in pairs for _ in range(repeats)]  # GRPO's groups
    batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left")
    assert (batch["attention_mask"] == 0).any()  # some prompts are left-padded
    return batch["input_ids"], batch["attention_mask"]


@pytest.mark.parametrize(
    ("seed", "temperature", "max_new", "repeats"),
    [(0, 1.0, 4, 1), (1, 0.7, 6, 1), (2, 1.5, 3, 1), (3, 1.0, 4, 4), (4, 1.2, 5, 3)],
)
def test_the_same_seed_draws_the_same_tokens_as_generate(tiny, seed, temperature, max_new, repeats):
    model, tokenizer = tiny
    ids, mask = prompts(tokenizer, seed, repeats)
    config = GenerationConfig(
        max_new_tokens=max_new,
        do_sample=True,
        temperature=temperature,
        top_p=1.0,
        top_k=0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=[tokenizer.eos_token_id],
        disable_compile=True,
    )
    torch.manual_seed(seed)
    theirs = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    theirs = theirs[:, ids.size(1) :]
    torch.manual_seed(seed)
    ours = sample(
        model,
        ids,
        mask,
        max_new_tokens=max_new,
        temperature=temperature,
        eos_token_ids=[tokenizer.eos_token_id],
        pad_token_id=tokenizer.pad_token_id,
    )
    assert torch.equal(ours, theirs)
    assert torch.isin(ours, torch.tensor([tokenizer.eos_token_id])).any()  # some ended early


def test_each_distinct_prompt_is_found_once_in_order_of_first_appearance():
    ids = torch.tensor([[0, 5, 6], [1, 2, 3], [0, 5, 6], [1, 2, 3], [4, 4, 4], [0, 5, 6]])
    mask = torch.tensor([[0, 1, 1]] + [[1, 1, 1]] * 5)
    # rows 0 and 2: the same ids, another mask, so two prompts; rows 2 and 5: one
    distinct, row_of = distinct_rows(ids, mask)
    assert distinct.tolist() == [0, 1, 2, 4]
    assert row_of.tolist() == [0, 1, 2, 1, 3, 2]
    assert torch.equal(ids[distinct][row_of], ids)
    assert torch.equal(mask[distinct][row_of], mask)


def test_only_plain_temperature_sampling_is_supported():
    plain = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": None, "repetition_penalty": 1.0}
    assert supported(**plain)
    assert supported(**{**plain, "top_k": None})
    for change in (
        {"top_p": 0.9},
        {"top_k": 50},
        {"min_p": 0.1},
        {"repetition_penalty": 1.1},
        {"temperature": 0.0},
    ):
        assert not supported(**{**plain, **change})

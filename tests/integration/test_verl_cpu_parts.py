"""The pieces of verl's CPU support, each against the real verl 0.9.1 and transformers."""

from __future__ import annotations

import pytest
import torch

from gmpo_kfp.evaluation.models import build_tiny_model, load_model_and_tokenizer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model, tokenizer = load_model_and_tokenizer(str(build_tiny_model(tmp_path_factory.mktemp("m"))))
    model.eval()
    return model, tokenizer


def test_verls_model_build_works_beside_trl(tiny):
    """Bug: verl imports trl's AutoModelForCausalLMWithValueHead whenever trl is installed;
    trl 1.16 has none, so building the actor failed with ImportError."""
    import importlib.util

    from verl.models.transformers import monkey_patch

    import gmpo_kfp.in_verl.plugin  # noqa: F401 - installs the fix, as in every verl process

    assert importlib.util.find_spec("trl") is not None  # the case that broke
    model, _ = tiny
    monkey_patch.apply_monkey_patch(model, use_remove_padding=False)
    fixed = monkey_patch.is_trl_available
    try:  # verl's own check, as it was: the same call fails
        monkey_patch.is_trl_available = lambda: True
        with pytest.raises(ImportError, match="AutoModelForCausalLMWithValueHead"):
            monkey_patch.apply_monkey_patch(model, use_remove_padding=False)
    finally:
        monkey_patch.is_trl_available = fixed


def test_the_cpu_platform_is_selected_by_name_only():
    from verl.plugin.platform import PlatformRegistry

    from gmpo_kfp.in_verl.cpu import PLATFORM_NAME
    from gmpo_kfp.in_verl.cpu.platform import PlatformCPU

    platform = PlatformRegistry.get(PLATFORM_NAME)()
    assert isinstance(platform, PlatformCPU)
    assert not platform.is_platform_available(use_smi_check=True)  # a GPU machine keeps its GPU
    assert platform.communication_backend_name() == "gloo"
    assert torch.zeros(1).to(platform.current_device()).device.type == "cpu"
    free, total = platform.device_module.mem_get_info()
    assert 0 < free <= total
    assert platform.device_module.memory_reserved() == 0


def test_greedy_batch_matches_generate_and_its_log_probs_the_model(tiny):
    from gmpo_kfp.in_verl.cpu.rollout import generate_batch

    model, tok = tiny
    prompts = [tok.encode(p, add_special_tokens=False) for p in ("07+45=", "3+4=", "12+30=")]
    out = generate_batch(
        model,
        prompts,
        [4, 2, 4],
        temperature=0.0,
        top_p=1.0,
        top_k=-1,
        logprobs=True,
        eos_token_ids=[tok.eos_token_id],
        pad_token_id=tok.pad_token_id,
    )
    assert len(out[1][0]) <= 2  # each request's own max_tokens
    for prompt, (tokens, logprobs) in zip(prompts, out, strict=True):
        alone = model.generate(
            torch.tensor([prompt]), max_new_tokens=4, do_sample=False, pad_token_id=0
        )[0, len(prompt) :].tolist()
        assert tokens == alone[: len(tokens)]
        if tok.eos_token_id in tokens:
            assert tokens.index(tok.eos_token_id) == len(tokens) - 1  # ends at its first EOS
        with torch.no_grad():
            logits = model(torch.tensor([prompt + tokens])).logits[0].log_softmax(-1)
        expected = [logits[len(prompt) - 1 + i, t].item() for i, t in enumerate(tokens)]
        assert logprobs == pytest.approx(expected, abs=1e-4)


def test_sampling_follows_temperature_top_k_and_the_seed(tiny):
    from gmpo_kfp.in_verl.cpu.rollout import generate_batch

    model, tok = tiny
    prompts = [tok.encode("07+45=", add_special_tokens=False)] * 16
    kw = {"eos_token_ids": [tok.eos_token_id], "pad_token_id": tok.pad_token_id, "top_p": 1.0}
    torch.manual_seed(0)
    hot = generate_batch(model, prompts, [4] * 16, temperature=5.0, top_k=-1, logprobs=True, **kw)
    torch.manual_seed(0)
    again = generate_batch(model, prompts, [4] * 16, temperature=5.0, top_k=-1, logprobs=True, **kw)
    assert hot == again
    assert len({tuple(t) for t, _ in hot}) > 1  # an untrained model at temperature 5 varies
    one = generate_batch(model, prompts, [4] * 16, temperature=5.0, top_k=1, logprobs=True, **kw)
    assert len({tuple(t) for t, _ in one}) == 1  # top-k 1 is greedy
    assert all(lp == pytest.approx(0.0, abs=1e-5) for _, lps in one for lp in lps)

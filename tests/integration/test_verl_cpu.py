"""verl 0.9.1 for real, on this machine's CPU: our mapping, loss, grader, CPU support, mirror.

No stand-in: ``train()`` with ``engine=verl`` launches ``python -m verl.trainer.main_ppo``
(Ray, FSDP2 on gloo, our transformers rollout), mirrors its checkpoint, merges it
with ``verl.model_merger``. It starts from a warmed-up tiny model (the shared warm-up
runs first): from an untrained one every reward is 0 and so is every gradient.
"""

from __future__ import annotations

import json

import pytest

from gmpo_kfp import metrics as M
from gmpo_kfp.config import apply_overrides
from gmpo_kfp.engines.training import train
from gmpo_kfp.presets import load_preset
from gmpo_kfp.storage import open_store

pytestmark = pytest.mark.slow

#: tiny-cpu on verl, cut to 2 steps of 16 prompts x 4 (verl has no linear schedule)
VERL_SHORT = [
    "engine=verl",
    "optim.lr_schedule=constant",
    "optim.warmup_steps=0",
    "trainer.total_steps=2",
    "trainer.save_freq=2",
    "trainer.test_freq=2",
    "batch.train_batch_size=16",
    "batch.mini_batch_size=16",
    "batch.micro_batch_size_per_gpu=64",
    "batch.log_prob_micro_batch_size_per_gpu=64",
    "sft.eval_prompts=256",
    "sft.target_pass_at_1=0.15",
]


def verl_config(out, *extra):
    return apply_overrides(
        load_preset("tiny-cpu"), [*VERL_SHORT, f"trainer.output_dir={out}", *extra]
    )


def test_verl_trains_on_the_cpu_end_to_end(tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    mirror = tmp_path / "bucket"
    result = train(verl_config(tmp_path / "run"), progress=False, output_uri=str(mirror))
    err = capsys.readouterr().err
    assert "verl on the CPU (no GPU here)" in err

    # a checkpoint written, mirrored, and merged into a model that loads as a causal LM
    assert result.steps == 2 and result.sft is not None
    assert (tmp_path / "run" / "checkpoints" / "global_step_2" / "actor").is_dir()
    latest = json.loads(open_store(str(mirror / "checkpoints")).get_bytes("latest.json"))
    assert (latest["checkpoint"], latest["step"]) == ("global_step_2", 2)
    assert any(rel.startswith("actor/") for rel in latest["files"])
    model = AutoModelForCausalLM.from_pretrained(result.model_dir)
    assert type(model).__name__ == "Qwen2ForCausalLM"

    # verl ran our loss (its own metric names), with a gradient, graded by our grader
    records = list(M.read_metrics(result.metrics_file))
    steps = {r["step"]: r["data"] for r in records}
    assert {1, 2} <= steps.keys()
    for step in (1, 2):
        data = steps[step]
        assert {M.TOKEN_RATIO_MIN, M.TOKEN_RATIO_MAX, M.SEQ_RATIO_MIN, M.SEQ_RATIO_MAX} <= set(data)
        assert data[M.GRAD_NORM] > 0
        assert M.GPU_MEMORY_GB in data  # verl's workers report their peak memory (0 here)
        assert 0 < data[M.SCORE_MEAN] <= 1  # the warmed-up model solves some problems
        # the rollout samples with the actor's weights, synced to it every step: measured
        # (2026-12-03) a mean |p_rollout - p_actor| of 0.0025-0.0032 synced (the actor
        # scores in bfloat16; its max over tokens reached 0.053) and 0.032 at step 2
        # with the sync skipped, max 0.32
        assert data["training/rollout_probs_diff_mean"] < 0.01
    assert result.pass_at_1_before is not None and result.pass_at_1_after is not None


def test_verl_trains_lora_adapters_on_the_cpu(tmp_path, warm_tiny_model):
    """lora.* through verl's own LoRA (peft inside its FSDP worker): the rollout samples
    with the adapters merged, the final model holds them merged and apart."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from gmpo_kfp.engines.lora import adapter_dir

    config = verl_config(
        tmp_path / "run",
        "sft.enabled=false",
        f"model.path={warm_tiny_model}",
        "lora.rank=8",
        "lora.alpha=16",
        "optim.lr=1e-2",
        "optim.weight_decay=0",
        "trainer.test_freq=-1",
        "trainer.val_before_train=false",
    )
    result = train(config, progress=False)
    steps = {r["step"]: r["data"] for r in M.read_metrics(result.metrics_file)}
    for step in (1, 2):
        assert 0 < steps[step][M.SCORE_MEAN] <= 1  # the warmed-up model solves some
        # the transformers rollout took the merged weights: it samples what the actor scores
        assert steps[step]["training/rollout_probs_diff_mean"] < 0.01
    # a step whose only right answers fill one group (all 4 of its samples) has no signal
    assert max(steps[step][M.GRAD_NORM] for step in (1, 2)) > 0
    base = load_file(str(warm_tiny_model / "model.safetensors"))
    final = load_file(str(result.model_dir / "model.safetensors"))
    assert final.keys() == base.keys()
    # beyond bfloat16's rounding (verl's merger writes bfloat16)
    changed = {
        k
        for k in base
        if not torch.allclose(base[k], final[k].to(base[k].dtype), atol=1e-3, rtol=1e-2)
    }
    assert changed and all(k.endswith("proj.weight") for k in changed), sorted(changed)
    adapters = adapter_dir(result.model_dir)
    assert adapters is not None
    ids = torch.tensor([[5, 9, 12, 7, 3, 11]])
    merged = AutoModelForCausalLM.from_pretrained(result.model_dir, dtype=torch.float32)
    on_base = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(warm_tiny_model), adapters
    )
    with torch.no_grad():
        # verl's merger writes bfloat16 weights: the same model, rounded
        torch.testing.assert_close(on_base(ids).logits, merged(ids).logits, atol=0.05, rtol=0.05)


def test_a_failed_verl_run_is_one_line_naming_the_step(tmp_path):
    config = verl_config(tmp_path / "run", "sft.enabled=false", "verl.extra=[trainer.no_such=1]")
    with pytest.raises(RuntimeError, match=r"^verl training failed with exit code 1: .*no_such"):
        train(config, progress=False)
    assert not (tmp_path / "run" / "model").exists()


def _recipe_contents() -> list[tuple[str, ...]]:
    """Every preset's ``verl.checkpoint_contents`` but the default, which
    :func:`test_verl_trains_on_the_cpu_end_to_end` saves, merges and loads already."""
    from gmpo_kfp.presets import preset_names

    default = tuple(load_preset("tiny-cpu").verl.checkpoint_contents)
    found = {tuple(load_preset(name).verl.checkpoint_contents) for name in preset_names()}
    return sorted(found - {default})


def test_the_end_to_end_run_saves_the_default_checkpoint_contents():
    assert tuple(verl_config("unused").verl.checkpoint_contents) == ("model", "optimizer", "extra")


@pytest.mark.parametrize("contents", _recipe_contents(), ids="+".join)
def test_each_recipe_presets_checkpoint_contents_end_in_a_whole_model(tmp_path, contents):
    """Every preset's ``verl.checkpoint_contents``, saved by real verl: the final model is
    whole (every weight, the output layer too), trained, and the one verl's FSDP merger
    makes of the same checkpoint."""
    import subprocess
    import sys

    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from gmpo_kfp.engines.verl import merge_command
    from gmpo_kfp.evaluation.models import TINY, resolve_model_path

    listed = "[" + ",".join(contents) + "]"
    config = verl_config(
        tmp_path / "run",
        "sft.enabled=false",
        "trainer.total_steps=1",
        "trainer.save_freq=1",
        "trainer.test_freq=-1",
        "trainer.val_before_train=false",
        f"verl.checkpoint_contents={listed}",
    )
    result = train(config, progress=False)
    _, info = AutoModelForCausalLM.from_pretrained(result.model_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    final = load_file(str(result.model_dir / "model.safetensors"))
    base = load_file(str(resolve_model_path(TINY, tmp_path / "run") + "/model.safetensors"))
    assert any(not final[k].equal(base[k]) for k in base), "the model did not train"

    actor = tmp_path / "run" / "checkpoints" / "global_step_1" / "actor"
    if "hf_model" in contents:
        # verl's own Hugging Face folder, in the training dtype (float32 here); the merger's
        # model of the same checkpoint, in bfloat16: the same weights, rounded
        assert {t.dtype for t in final.values()} == {torch.float32}
        merged = tmp_path / "merged"
        subprocess.run(merge_command(actor, merged, sys.executable), check=True)
        other = load_file(str(merged / "model.safetensors"))
        assert other.keys() == final.keys()
        for name, tensor in final.items():
            assert other[name].dtype == torch.bfloat16
            assert tensor.to(torch.bfloat16).equal(other[name]), name

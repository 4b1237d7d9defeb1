"""Our Hydra overrides compose with verl 0.9.1's own ``ppo_trainer`` config."""

from __future__ import annotations

from pathlib import Path

import pytest
import verl.trainer
from hydra import compose, initialize_config_dir

from gmpo_kfp.config import apply_overrides
from gmpo_kfp.engines.verl import verl_override_map, verl_overrides
from gmpo_kfp.presets import load_preset, preset_names

CONFIG_DIR = str(Path(verl.trainer.__file__).parent / "config")


def verl_config(name: str, device: str = "gpu"):
    config = load_preset(name)
    if name == "tiny-cpu":  # verl has no linear schedule: the mapping refuses it
        config = apply_overrides(config, ["optim.lr_schedule=cosine"])
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return config, compose("ppo_trainer", overrides=verl_overrides(config, device))


@pytest.mark.parametrize("device", ["gpu", "cpu"])
@pytest.mark.parametrize("name", preset_names())
def test_every_override_lands_in_verls_config(name, device):
    config, composed = verl_config(name, device)
    for key, value in verl_override_map(config, device).items():
        node = composed
        for part in key.lstrip("+").split("."):
            assert part in node, f"{name}: {key}"
            node = node[part]
        got = list(node) if hasattr(node, "__len__") and not isinstance(node, str) else node
        assert got == value, (key, got, value)
    assert composed.actor_rollout_ref.actor.policy_loss.loss_mode == "gmpo"
    rollout = composed.actor_rollout_ref.rollout.name
    assert rollout == ("transformers" if device == "cpu" else "vllm")


def test_verl_loads_our_grader_as_its_custom_reward_function():
    from verl.trainer.ppo.reward import get_custom_reward_fn

    from gmpo_kfp import reward
    from gmpo_kfp.config import config_from_dict
    from gmpo_kfp.engines.verl import verl_override_map

    o = verl_override_map(config_from_dict({}))
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "reward": {
                "custom_reward_function": {
                    "path": o["reward.custom_reward_function.path"],
                    "name": o["reward.custom_reward_function.name"],
                }
            }
        }
    )
    fn = get_custom_reward_fn(cfg)
    assert fn("arithmetic", "52", "52") == reward.compute_score("arithmetic", "52", "52")
    assert fn("openai/gsm8k", "#### 3", "4") == {"score": 0.0, "acc": 0.0}
    off = verl_override_map(config_from_dict({"verl": {"reward_function": "verl"}}))
    assert not any("custom_reward_function" in key for key in off)


def test_the_qwen3_8b_scripts_balance_batch_is_verls_default():
    _, composed = verl_config("gmpo-qwen3-8b-math")
    assert composed.trainer.balance_batch is True  # the script's trainer.balance_batch=True


def test_the_validation_subset_is_the_one_verl_selects(tmp_path):
    """data.val_max_samples: the trl engine validates on the rows verl's RLHFDataset keeps."""
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from gmpo_kfp.data.arithmetic import arithmetic_rows
    from gmpo_kfp.data.schema import write_rl_parquet
    from gmpo_kfp.engines.trl import val_subset
    from gmpo_kfp.evaluation.models import build_tiny_model, load_tokenizer

    rows = arithmetic_rows("test", limit=200)
    path = write_rl_parquet(rows, tmp_path / "val.parquet")
    config = apply_overrides(load_preset("tiny-cpu"), ["data.val_max_samples=16", "trainer.seed=7"])
    o = verl_override_map(apply_overrides(config, ["optim.lr_schedule=cosine"]), "cpu")
    assert o["data.val_max_samples"] == 16 and o["data.seed"] == 7
    data_config = OmegaConf.create(
        {"shuffle": True, "seed": o["data.seed"], "max_prompt_length": 16, "prompt_key": "prompt"}
    )
    tokenizer = load_tokenizer(str(build_tiny_model(tmp_path / "tiny")))
    dataset = RLHFDataset(
        [str(path)], tokenizer, data_config, max_samples=o["data.val_max_samples"]
    )
    theirs = [dataset.dataframe[i]["extra_info"]["index"] for i in range(len(dataset))]
    ours = [r["extra_info"]["index"] for r in val_subset(rows, config)]
    assert len(ours) == 16 and ours == theirs
    assert val_subset(rows, apply_overrides(config, ["data.val_max_samples=-1"])) == rows


@pytest.mark.parametrize("device", ["gpu", "cpu"])
def test_lora_lands_in_verls_model_config(device):
    """lora.* -> verl's FSDP LoRA options, as verl's own config composes them."""
    config = apply_overrides(
        load_preset("gmpo-qwen2.5-7b-math"),
        ["lora.rank=32", "lora.alpha=64", "lora.target_modules=[q_proj,k_proj,v_proj,o_proj]"],
    )
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        composed = compose("ppo_trainer", overrides=verl_overrides(config, device))
    model = composed.actor_rollout_ref.model
    assert (model.lora_rank, model.lora_alpha) == (32, 64)
    assert list(model.target_modules) == ["q_proj", "k_proj", "v_proj", "o_proj"]
    # vLLM takes the adapters apart from the base; our CPU rollout takes them merged
    assert model.lora.merge is (device == "cpu")
    everything = apply_overrides(config, ["lora.target_modules=[all-linear]"])
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        composed = compose("ppo_trainer", overrides=verl_overrides(everything, device))
    assert composed.actor_rollout_ref.model.target_modules == "all-linear"


def test_full_fine_tuning_leaves_verls_lora_off():
    _, composed = verl_config("gmpo-qwen2.5-7b-math")
    assert composed.actor_rollout_ref.model.lora_rank == 0


def test_lora_dropout_is_refused_for_verl_rather_than_dropped():
    from gmpo_kfp.config import ConfigError

    config = apply_overrides(
        load_preset("gmpo-qwen2.5-7b-math"), ["lora.rank=8", "lora.dropout=0.05"]
    )
    with pytest.raises(ConfigError, match=r"lora\.dropout=0\.05 is not available in verl"):
        verl_overrides(config)

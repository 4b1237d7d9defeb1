"""Presets reproduce the GMPO README's verl scripts (values from gmpo_spec.md)."""

from __future__ import annotations

import warnings

import pytest
import yaml

from gmpo_kfp.config import ConfigError, apply_overrides
from gmpo_kfp.engines.verl import verl_command, verl_override_map, verl_overrides
from gmpo_kfp.presets import load_preset, preset_names, preset_summary, preset_text

A = "actor_rollout_ref.actor."
R = "actor_rollout_ref.rollout."
REF = "actor_rollout_ref.ref."
M = "actor_rollout_ref.model."

# run_qwen2_5-7b_math.sh, as listed in gmpo_spec.md. On purpose: loss_mode=gmpo (our
# split-invariant registration) where the script says geo_mean, and checkpoints that a
# retried step resumes from (model, optimizer, extra) beside the script's hf_model.
QUICK_START = {
    "algorithm.adv_estimator": "grpo",
    "algorithm.use_kl_in_reward": False,
    "data.train_batch_size": 1024,
    "data.max_prompt_length": 1024,
    "data.max_response_length": 1024,
    "data.filter_overlong_prompts": True,
    "data.truncation": "error",
    M + "path": "Qwen/Qwen2.5-Math-7B",
    M + "use_remove_padding": True,
    M + "enable_gradient_checkpointing": True,
    A + "optim.lr": 1e-6,
    A + "ppo_mini_batch_size": 256,
    A + "ppo_micro_batch_size_per_gpu": 16,
    A + "use_kl_loss": False,
    A + "kl_loss_coef": 0.001,
    A + "kl_loss_type": "low_var_kl",
    A + "policy_loss.loss_mode": "gmpo",
    A + "clip_ratio_low": 0.4,
    A + "clip_ratio_high": 0.4,
    A + "entropy_coeff": 0,
    A + "fsdp_config.param_offload": False,
    A + "fsdp_config.optimizer_offload": False,
    A + "checkpoint.save_contents": ["model", "optimizer", "extra", "hf_model"],
    R + "name": "vllm",
    R + "n": 5,
    R + "tensor_model_parallel_size": 2,
    R + "gpu_memory_utilization": 0.6,
    R + "log_prob_micro_batch_size_per_gpu": 16,
    REF + "log_prob_micro_batch_size_per_gpu": 16,
    REF + "fsdp_config.param_offload": True,
    "trainer.critic_warmup": 0,
    "trainer.n_gpus_per_node": 8,
    "trainer.nnodes": 1,
    "trainer.save_freq": 20,
    "trainer.test_freq": 5,
    "trainer.total_epochs": 15,
    # verl defaults then in force, which the script relied on
    R + "temperature": 1.0,
    R + "top_p": 1.0,
    R + "val_kwargs.temperature": 0.0,
    R + "val_kwargs.n": 1,
}

# test_dapo_7b_math.sh. On purpose: loss_mode=gmpo, and verl 0.9.1's reward section
# (reward.reward_manager.name, +reward.reward_kwargs) where the July 2025 script
# wrote reward_model.reward_manager and +reward_model.reward_kwargs.
DAPO_7B = {
    "data.max_prompt_length": 2048,
    "data.max_response_length": 8192,
    "data.truncation": "left",
    "data.train_batch_size": 512,
    M + "path": "Qwen/Qwen2.5-Math-7B",
    "+" + M + "override_config.max_position_embeddings": 32768,
    A + "policy_loss.loss_mode": "gmpo",
    A + "clip_ratio_low": 0.4,
    A + "clip_ratio_high": 0.4,
    A + "optim.lr": 1e-6,
    A + "optim.lr_warmup_steps": 10,
    A + "optim.weight_decay": 0.1,
    A + "ppo_mini_batch_size": 32,
    A + "use_dynamic_bsz": True,
    A + "ppo_max_token_len_per_gpu": 20480,
    A + "grad_clip": 1.0,
    A + "loss_agg_mode": "token-mean",
    A + "ulysses_sequence_parallel_size": 4,
    A + "fsdp_config.param_offload": True,
    A + "fsdp_config.optimizer_offload": True,
    A + "fsdp_config.fsdp_size": 32,
    A + "use_kl_loss": False,
    "algorithm.use_kl_in_reward": False,
    R + "n": 16,
    R + "tensor_model_parallel_size": 4,
    R + "gpu_memory_utilization": 0.8,
    R + "enable_chunked_prefill": True,
    R + "max_num_batched_tokens": 10240,
    R + "temperature": 1.0,
    R + "top_p": 1.0,
    R + "val_kwargs.temperature": 1.0,
    R + "val_kwargs.top_p": 0.7,
    R + "val_kwargs.n": 1,
    "reward.reward_manager.name": "dapo",
    "+reward.reward_kwargs.overlong_buffer_cfg.enable": True,
    "+reward.reward_kwargs.overlong_buffer_cfg.len": 4096,
    "+reward.reward_kwargs.overlong_buffer_cfg.penalty_factor": 1.0,
    "+reward.reward_kwargs.max_resp_len": 8192,
    "trainer.nnodes": 8,
    "trainer.n_gpus_per_node": 8,
    "trainer.total_epochs": 10,
    "trainer.total_training_steps": 200,
    "trainer.save_freq": 10,
    "trainer.test_freq": 10,
    "trainer.resume_mode": "auto",
    "trainer.val_before_train": True,
}

# test_dapo_qwen3_30b_math.sh: as the 7B script but the MoE model, 300 steps, no
# max_position_embeddings override; on purpose clip 0.2 / 0.2 (the README's MoE advice;
# the script used 0.4).
DAPO_30B = {k: v for k, v in DAPO_7B.items() if "max_position_embeddings" not in k} | {
    M + "path": "Qwen/Qwen3-30B-A3B-Base",
    "trainer.total_training_steps": 300,
    A + "clip_ratio_low": 0.2,
    A + "clip_ratio_high": 0.2,
}

# run_qwen3_8b_fsdp.sh, verl's GMPO example of today (gmpo_spec.md); geo_mean -> gmpo
QWEN3_8B = {
    "algorithm.adv_estimator": "grpo",
    "algorithm.use_kl_in_reward": False,
    "data.train_batch_size": 1024,
    "data.max_prompt_length": 1024,
    "data.max_response_length": 2048,
    "data.filter_overlong_prompts": True,
    "data.truncation": "error",
    M + "path": "Qwen/Qwen3-8B",
    M + "use_remove_padding": True,
    M + "enable_gradient_checkpointing": True,
    A + "policy_loss.loss_mode": "gmpo",
    A + "clip_ratio_low": 0.4,
    A + "clip_ratio_high": 0.4,
    A + "optim.lr": 1e-6,
    A + "ppo_mini_batch_size": 256,
    A + "use_dynamic_bsz": True,
    A + "ppo_max_token_len_per_gpu": 24576,
    A + "use_kl_loss": True,
    A + "kl_loss_coef": 0.001,
    A + "kl_loss_type": "low_var_kl",
    A + "entropy_coeff": 0,
    A + "fsdp_config.param_offload": False,
    A + "fsdp_config.optimizer_offload": False,
    R + "name": "vllm",
    R + "tensor_model_parallel_size": 2,
    R + "gpu_memory_utilization": 0.6,
    R + "n": 5,
    R + "log_prob_use_dynamic_bsz": True,
    R + "log_prob_max_token_len_per_gpu": 24576,
    REF + "log_prob_use_dynamic_bsz": True,
    REF + "log_prob_max_token_len_per_gpu": 24576,
    REF + "fsdp_config.param_offload": True,
    "trainer.critic_warmup": 0,
    "trainer.n_gpus_per_node": 8,
    "trainer.nnodes": 1,
    "trainer.save_freq": 20,
    "trainer.test_freq": 5,
    "trainer.total_epochs": 15,
}

SCRIPTS = {
    "gmpo-qwen2.5-7b-math": QUICK_START,
    "gmpo-qwen3-8b-math": QWEN3_8B,
    "gmpo-dapo-qwen2.5-7b-math": DAPO_7B,
    "gmpo-dapo-qwen3-30b-a3b-math": DAPO_30B,
}


def test_all_presets_load_without_warnings():
    assert preset_names() == [
        "gmpo-dapo-qwen2.5-7b-math",
        "gmpo-dapo-qwen3-30b-a3b-math",
        "gmpo-qwen2.5-7b-math",
        "gmpo-qwen3-8b-math",
        "paper-qwen2.5-math-7b",
        "smollm2-135m-cpu",
        "tiny-cpu",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in preset_names():
            assert load_preset(name).name == name
            assert preset_summary(name)


@pytest.mark.parametrize("name", SCRIPTS)
def test_verl_mapping_reproduces_the_script(name):
    ours = verl_override_map(load_preset(name))
    for key, value in SCRIPTS[name].items():
        assert key in ours, key
        assert ours[key] == value, (key, ours[key], value)


def test_dapo_scripts_switch_no_dynamic_sampling_and_no_kl():
    for name in ("gmpo-dapo-qwen2.5-7b-math", "gmpo-dapo-qwen3-30b-a3b-math"):
        ours = verl_override_map(load_preset(name))
        assert not any("filter_groups" in k for k in ours)
        assert ours[A + "use_kl_loss"] is False and ours[A + "kl_loss_coef"] == 0.0


def test_moe_preset_says_the_script_used_0_4():
    text = preset_text("gmpo-dapo-qwen3-30b-a3b-math")
    assert "0.4" in text and "advise 0.2 / 0.2" in text
    config = load_preset("gmpo-dapo-qwen3-30b-a3b-math")
    assert config.model.moe
    with pytest.warns(UserWarning, match="MoE runs"):
        apply_overrides(config, ["algorithm.clip_ratio_high=0.4"])


def test_paper_recipe_values():
    c = load_preset("paper-qwen2.5-math-7b")
    assert (c.rollout.n, c.batch.train_batch_size, c.batch.mini_batch_size) == (8, 128, 128)
    assert c.data.max_response_length == 3000 and c.optim.lr == 1e-6
    assert (c.rollout.val_temperature, c.rollout.val_top_p, c.rollout.val_n) == (0.6, 0.95, 16)
    assert "math_lvl3to5_8k" in c.data.train_files[0]


def test_override_strings_parse_back_to_the_values():
    config = load_preset("gmpo-dapo-qwen2.5-7b-math")
    mapping = verl_override_map(config)
    for text in verl_overrides(config):
        key, _, raw = text.partition("=")
        assert yaml.safe_load(raw) == mapping[key], text
    cmd = verl_command(config)
    assert cmd[:3] == ["python3", "-m", "verl.trainer.main_ppo"]


def test_linear_schedule_is_refused_for_verl():
    with pytest.raises(ConfigError, match=r"optim\.lr_schedule=linear is not available in verl"):
        verl_override_map(load_preset("tiny-cpu"))


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ConfigError, match="unknown preset 'qwen'; known presets: gmpo-dapo"):
        load_preset("qwen")

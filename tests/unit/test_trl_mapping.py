"""config -> TRL GMPOConfig / GRPOConfig."""

from __future__ import annotations

import warnings

import pytest
from trl import GRPOConfig

from gmpo_kfp.config import ConfigError, apply_overrides, config_from_dict
from gmpo_kfp.engines.trl import (
    GMPOTrainer,
    GRPOTrainer,
    batch_plan,
    sft_args,
    trainer_class,
    trl_args,
    unsupported,
)
from gmpo_kfp.presets import load_preset

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from trl.experimental.gmpo import GMPOConfig


def cfg(**sections):
    return config_from_dict(sections)


def test_tiny_cpu_preset_maps_to_one_gmpo_step_per_rollout(tmp_path):
    config = load_preset("tiny-cpu")
    args = trl_args(config, str(tmp_path), max_steps=3400)
    assert type(args) is GMPOConfig
    assert (args.epsilon, args.epsilon_high) == (0.4, 0.4)
    assert args.num_generations == 4
    assert args.per_device_train_batch_size == 128 and args.gradient_accumulation_steps == 1
    assert args.generation_batch_size == 128 and args.steps_per_generation == 1
    assert args.max_steps == 3400 and args.max_completion_length == 4
    assert args.learning_rate == 3.5e-4 and args.warmup_steps == 200
    assert args.lr_scheduler_type == "linear" and args.adam_beta2 == 0.99
    assert args.beta == 0.0 and args.seed == 1 and args.temperature == 1.0


def test_mini_batches_and_ppo_epochs_give_off_policy_steps(tmp_path):
    config = cfg(
        algorithm={"loss": "grpo", "ppo_epochs": 2, "clip_ratio_low": 0.2, "clip_ratio_high": 0.28},
        rollout={"n": 8},
        batch={"train_batch_size": 64, "mini_batch_size": 16, "micro_batch_size_per_gpu": 32},
        optim={"lr_schedule": "constant", "warmup_steps": 10},
    )
    plan = batch_plan(config)
    assert plan == {
        "micro": 32,
        "grad_accum": 4,
        "steps_per_generation": 16,
        "optim_steps_per_rollout": 8,
    }
    args = trl_args(config, str(tmp_path), max_steps=5)
    assert type(args) is GRPOConfig
    assert args.max_steps == 40 and args.logging_steps == 8 and args.num_iterations == 2
    assert (args.epsilon, args.epsilon_high) == (0.2, 0.28)
    assert args.lr_scheduler_type == "constant_with_warmup"
    assert trainer_class(config) is GRPOTrainer
    assert trainer_class(cfg()) is GMPOTrainer


def test_kl_and_drgrpo_and_checkpoints(tmp_path):
    config = cfg(
        algorithm={"use_kl_loss": True, "kl_beta": 0.01, "adv_estimator": "drgrpo"},
        trainer={"save_freq": 5},
        batch={"train_batch_size": 2, "mini_batch_size": 2, "micro_batch_size_per_gpu": 16},
    )
    args = trl_args(config, str(tmp_path), max_steps=10)
    assert args.beta == 0.01 and args.scale_rewards == "none"
    assert args.save_strategy == "steps" and args.save_steps == 5
    never = cfg(trainer={"save_freq": -1}, batch={"micro_batch_size_per_gpu": 16})
    assert trl_args(never, str(tmp_path), max_steps=1).save_strategy == "no"


def test_a_micro_batch_that_does_not_divide_is_a_config_error():
    config = cfg(
        rollout={"n": 8},
        batch={"train_batch_size": 4, "mini_batch_size": 4, "micro_batch_size_per_gpu": 12},
    )
    with pytest.raises(ConfigError, match=r"batch.micro_batch_size_per_gpu \(12\) must divide"):
        batch_plan(config)


def test_what_trl_cannot_honour_is_listed():
    assert unsupported(cfg()) == []
    notes = unsupported(
        cfg(
            batch={"dynamic_batch_size": True},
            verl={"reward_manager": "dapo", "overlong_buffer_len": 4096},
            resources={"gpus_per_node": 8},
        )
    )
    assert len(notes) == 3 and "dynamic_batch_size" in notes[0]


def test_warm_up_checks_more_often_near_its_target(monkeypatch):
    """Coarse checks far from the target, fine ones from half of it; stop at the target."""
    from types import SimpleNamespace

    import gmpo_kfp.evaluation.evaluate as evaluate
    from gmpo_kfp.engines.trl import StopAtPassRate

    scores = iter([0.02, 0.05, 0.10, 0.14, 0.19])
    checked: list[int] = []

    def fake_pass_at_1(model, tokenizer, rows, *, max_new_tokens):
        checked.append(state.global_step)
        return SimpleNamespace(mean=next(scores))

    monkeypatch.setattr(evaluate, "pass_at_1", fake_pass_at_1)
    stop = StopAtPassRate([], target=0.18, every=20, every_near=5, max_new_tokens=4)
    state, control = SimpleNamespace(global_step=0), SimpleNamespace(should_training_stop=False)
    while not control.should_training_stop and state.global_step < 200:
        state.global_step += 1
        stop.on_step_end(None, state, control, model=None)
    # 0.10 >= 0.18 / 2 at step 60: from there on every 5 steps
    assert checked == [20, 40, 60, 65, 70]
    assert stop.history[-1] == (70, 0.19) and state.global_step == 70


def test_warm_up_without_every_near_keeps_one_interval():
    from gmpo_kfp.engines.trl import StopAtPassRate

    stop = StopAtPassRate([], target=0.2, every=25, max_new_tokens=4)
    stop.history.append((25, 0.19))
    assert stop.interval() == 25


def test_bf16_is_the_users_choice_and_off_on_a_cpu_by_default(tmp_path):
    import torch

    from gmpo_kfp.config import config_from_dict
    from gmpo_kfp.engines.trl import bf16, trl_args

    unset = config_from_dict({})
    assert bf16(unset) is (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    for value in (True, False):
        config = config_from_dict({"model": {"bf16": value}})
        assert trl_args(config, str(tmp_path), max_steps=1).bf16 is value


@pytest.mark.parametrize("on", [False, True])
def test_the_warm_up_and_rl_recompute_activations_only_when_the_config_says(tmp_path, on):
    """TRL's SFTConfig and GRPOConfig default to gradient checkpointing: both follow ours."""
    config = apply_overrides(load_preset("tiny-cpu"), [f"model.gradient_checkpointing={on}"])
    assert trl_args(config, str(tmp_path), max_steps=1).gradient_checkpointing is on
    sft = sft_args(config, str(tmp_path))
    assert sft.gradient_checkpointing is on
    assert (sft.learning_rate, sft.per_device_train_batch_size) == (2.5e-3, 128)

"""TRL's GMPO loss against gmpo_kfp.objective.gmpo_loss, and where TRL departs from the spec."""

from __future__ import annotations

import warnings

import pytest
import torch
from datasets import Dataset

from gmpo_kfp.config import config_from_dict
from gmpo_kfp.engines.trl import GMPOTrainer, trl_args
from gmpo_kfp.evaluation.models import build_tiny_model, load_model_and_tokenizer
from gmpo_kfp.objective import gmpo_loss

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from trl.experimental.gmpo import GMPOTrainer as TRLGMPOTrainer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_tiny_model(tmp_path_factory.mktemp("m") / "tiny")
    return str(path)


def make(cls, tiny, tmp_path, **extra):
    model, tokenizer = load_model_and_tokenizer(tiny)
    config = config_from_dict(
        {
            "rollout": {"n": 4},
            "batch": {"train_batch_size": 2, "mini_batch_size": 2, "micro_batch_size_per_gpu": 8},
            "data": {"max_response_length": 6},
            "trainer": {"total_steps": 1},
        }
    )
    args = trl_args(config, str(tmp_path), max_steps=1)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": "1+1="}]}] * 4)
    trainer = cls(
        model=model,
        reward_funcs=[lambda completions, **k: [0.0] * len(completions)],
        args=args,
        train_dataset=data,
        processing_class=tokenizer,
        **extra,
    )
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    return trainer, config


def batch(seed, *, log_ratio_scale=0.3, empty_row=False, huge=False):
    g = torch.Generator().manual_seed(seed)
    b, p, t = 8, 4, 6
    prompt_ids = torch.randint(4, 23, (b, p), generator=g)
    completion_ids = torch.randint(4, 23, (b, t), generator=g)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).long()
    if empty_row:
        mask[0] = 0
    advantages = torch.randn(b, generator=g)
    advantages[1] = 0.0
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": torch.ones_like(prompt_ids),
        "completion_ids": completion_ids,
        "completion_mask": mask,
        "advantages": advantages,
        "noise": torch.randn(b, t, generator=g) * log_ratio_scale,
        "huge": huge,
    }


def with_old(trainer, inputs):
    """Old log-probs = current ones minus a known log-ratio (so ratios leave 1)."""
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    att = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, att, inputs["completion_ids"].size(1)
        )
    log_ratio = inputs["noise"].clone()
    if inputs["huge"]:
        log_ratio[2, 0] = 1000.0
        inputs["advantages"][2] = -1.0
    out = {k: v for k, v in inputs.items() if k not in ("noise", "huge")}
    out["old_per_token_logps"] = logps - log_ratio
    return out, logps


@pytest.mark.parametrize("seed", range(4))
def test_trl_gmpo_loss_equals_ours_within_1e_5(tiny, tmp_path, seed):
    trainer, _ = make(TRLGMPOTrainer, tiny, tmp_path)
    inputs, logps = with_old(trainer, batch(seed))
    theirs = trainer._compute_loss(trainer.model, inputs)
    mask = inputs["completion_mask"].float()
    ours, _ = gmpo_loss(
        inputs["old_per_token_logps"],
        logps,
        inputs["advantages"][:, None].expand_as(logps),
        mask,
        clip_ratio_low=0.4,
        clip_ratio_high=0.4,
    )
    assert abs(theirs.item() - ours.item()) < 1e-5
    # and their gradients agree too
    trainer.model.zero_grad()
    theirs.backward()
    grads_theirs = [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]
    trainer.model.zero_grad()
    ours_trainer_loss = ours_loss_through_engine(tiny, tmp_path, inputs, trainer.model)
    ours_trainer_loss.backward()
    grads_ours = [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]
    for a, b in zip(grads_theirs, grads_ours, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def ours_loss_through_engine(tiny, tmp_path, inputs, model):
    trainer, _ = make(GMPOTrainer, tiny, tmp_path, gmpo_config=config_from_dict({}))
    trainer.model.load_state_dict(model.state_dict())
    loss = trainer._compute_loss(model, inputs)
    return loss


def test_the_engine_loss_is_our_objective(tiny, tmp_path):
    trainer, _ = make(GMPOTrainer, tiny, tmp_path, gmpo_config=config_from_dict({}))
    inputs, logps = with_old(trainer, batch(7))
    engine = trainer._compute_loss(trainer.model, inputs)
    mask = inputs["completion_mask"].float()
    ours, _ = gmpo_loss(
        inputs["old_per_token_logps"], logps, inputs["advantages"][:, None].expand_as(logps), mask
    )
    assert engine.item() == pytest.approx(ours.item(), abs=1e-7)
    assert "actor/token_ratio_max" in trainer._gmpo_step_metrics


def test_where_trl_departs_from_the_spec_ours_does_not(tiny, tmp_path):
    trl_trainer, _ = make(TRLGMPOTrainer, tiny, tmp_path)
    ours_trainer, _ = make(GMPOTrainer, tiny, tmp_path, gmpo_config=config_from_dict({}))
    # a huge log-ratio on the unclipped side (A < 0): TRL's loss overflows, ours stays finite
    inputs, _ = with_old(trl_trainer, batch(1, huge=True))
    assert not torch.isfinite(trl_trainer._compute_loss(trl_trainer.model, inputs))
    assert torch.isfinite(ours_trainer._compute_loss(ours_trainer.model, inputs))
    # an empty response: TRL adds -A to its loss value, ours adds nothing
    inputs, _ = with_old(trl_trainer, batch(2, empty_row=True, log_ratio_scale=0.0))
    theirs = trl_trainer._compute_loss(trl_trainer.model, inputs).item()
    ours = ours_trainer._compute_loss(ours_trainer.model, inputs).item()
    adv = inputs["advantages"]
    assert theirs == pytest.approx(-adv.mean().item(), abs=1e-6)
    assert ours == pytest.approx(-adv[1:].sum().item() / len(adv), abs=1e-6)


def loss_and_grads(trainer, inputs):
    """The engine's loss on ``inputs``, every parameter's gradient, the step's metrics."""
    trainer._gmpo_step_metrics.clear()
    trainer.model.zero_grad()
    value = trainer._compute_loss(trainer.model, inputs)
    value.backward()
    grads = [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]
    return value, grads, dict(trainer._gmpo_step_metrics)


@pytest.mark.parametrize("loss", ["gmpo", "grpo"])
def test_rows_without_a_learning_signal_skip_the_forward_and_change_nothing_else(
    tiny, tmp_path, loss
):
    """On-policy, a row with advantage 0 adds nothing: its forward and backward are skipped."""
    from gmpo_kfp.engines.trl import GRPOTrainer

    cls = GMPOTrainer if loss == "gmpo" else GRPOTrainer
    config = config_from_dict({"algorithm": {"loss": loss}})
    trainer, _ = make(cls, tiny, tmp_path, gmpo_config=config)
    inputs = {k: v for k, v in batch(3).items() if k not in ("noise", "huge")}
    inputs["advantages"][[0, 4, 5]] = 0.0  # four rows of eight have no signal
    seen = []
    hook = trainer.model.model.embed_tokens.register_forward_hook(
        lambda module, args, out: seen.append(args[0].size(0))
    )

    trainer.gmpo_skip_zero_advantage = False
    full, full_grads, full_metrics = loss_and_grads(trainer, inputs)
    trainer.gmpo_skip_zero_advantage = True
    skipped, skipped_grads, skipped_metrics = loss_and_grads(trainer, inputs)
    hook.remove()
    assert seen == [8, 4]
    assert skipped.item() == pytest.approx(full.item(), abs=1e-7)
    assert len(full_grads) == len(skipped_grads)
    for a, b in zip(full_grads, skipped_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-5)
    entropy = "actor/entropy"
    assert {k: v for k, v in skipped_metrics.items() if k != entropy} == pytest.approx(
        {k: v for k, v in full_metrics.items() if k != entropy}
    )
    # off-policy (old log-probs given), every row goes forward: ratios of 1 would be wrong
    seen.clear()
    hook = trainer.model.model.embed_tokens.register_forward_hook(
        lambda module, args, out: seen.append(args[0].size(0))
    )
    old, _ = with_old(trainer, batch(3))
    old["advantages"][[0, 4, 5]] = 0.0
    trainer._compute_loss(trainer.model, old)
    hook.remove()
    assert seen == [8, 8]  # with_old's own forward, then the loss's


def test_rollouts_sampled_plainly_are_the_tokens_trl_would_sample(tiny, tmp_path):
    trainer, _ = make(GMPOTrainer, tiny, tmp_path, gmpo_config=config_from_dict({}))
    tokenizer = trainer.processing_class
    prompts = [tokenizer(f"{a}+{b}=")["input_ids"] for a, b in [(1, 2), (34, 5), (99, 99), (7, 60)]]
    prompts = [p for p in prompts for _ in range(4)]

    def rollouts(plain: bool):
        trainer.gmpo_plain_sampling = plain
        assert trainer._plain_sampling(None, {}) is plain
        torch.manual_seed(11)
        return trainer._generate_single_turn(prompts, None, {}, 4)

    theirs, ours = rollouts(False), rollouts(True)
    assert ours == theirs
    assert len({len(c) for c in ours[0]}) > 1  # some ended at EOS before the length limit
    # top-p sampling is TRL's own
    trainer.gmpo_plain_sampling, trainer.top_p = True, 0.9
    assert not trainer._plain_sampling(None, {})


def test_the_update_runs_each_distinct_prompt_once_and_computes_the_same(tiny, tmp_path):
    """GRPO's groups share a prompt: the prompt's forward runs once per group (shared_prefix)."""
    trainer, _ = make(GMPOTrainer, tiny, tmp_path, gmpo_config=config_from_dict({}))
    inputs = {k: v for k, v in batch(5).items() if k not in ("noise", "huge")}
    group = torch.arange(8) // 4  # two prompts, four completions each, the second left-padded
    prompts = torch.tensor([[7, 8, 9, 10], [3, 11, 12, 13]])
    inputs["prompt_ids"] = prompts[group]
    inputs["prompt_mask"] = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])[group]
    inputs["advantages"][1] = 0.5  # every row learns: none is skipped
    seen = []
    hook = trainer.model.model.embed_tokens.register_forward_hook(
        lambda module, args, out: seen.append(tuple(args[0].shape))
    )

    trainer.gmpo_shared_prefix = False
    full, full_grads, full_metrics = loss_and_grads(trainer, inputs)
    trainer.gmpo_shared_prefix = True
    shared, shared_grads, shared_metrics = loss_and_grads(trainer, inputs)
    hook.remove()
    # TRL's forward: 8 rows of prompt + completion; ours: 2 prompts (less their last
    # token), then 8 rows of the last prompt token + completion
    assert seen == [(8, 10), (2, 3), (8, 7)]
    assert shared.item() == pytest.approx(full.item(), abs=1e-6)
    assert len(full_grads) == len(shared_grads)
    for a, b in zip(full_grads, shared_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    assert shared_metrics == pytest.approx(full_metrics, rel=1e-4, abs=1e-6)
    # no prompt repeated: TRL's forward, as before
    seen.clear()
    hook = trainer.model.model.embed_tokens.register_forward_hook(
        lambda module, args, out: seen.append(args[0].size(0))
    )
    trainer._compute_loss(trainer.model, {**inputs, "prompt_ids": batch(5)["prompt_ids"]})
    hook.remove()
    assert seen == [8]

"""Our loss inside verl 0.9.1: registration paths, verl's signature, split invariance."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from verl.trainer.ppo import core_algos
from verl.workers.config import ActorConfig

from gmpo_kfp.in_verl import plugin as verl_plugin
from gmpo_kfp.objective import METRIC_NAMES, gmpo_loss
from tests.support.batches import random_batch

CHECK = (
    "import verl; from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY as R; "
    "f = R.get('gmpo'); print(f.__module__ if f else 'missing', R['geo_mean'].__module__)"
)


def run_fresh(env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERL_USE_EXTERNAL")}
    env.update(env_extra)
    out = subprocess.run(
        [sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


def test_import_verl_registers_gmpo_through_the_entry_point():
    """What every Ray worker does: a plain `import verl` loads the verl.plugins group."""
    assert run_fresh({}) == ["gmpo_kfp.in_verl.plugin", "verl.trainer.ppo.core_algos"]
    assert run_fresh({"VERL_USE_EXTERNAL_PLUGINS": "gmpo"})[0] == "gmpo_kfp.in_verl.plugin"


def test_external_modules_is_the_other_way():
    env = {
        "VERL_USE_EXTERNAL_PLUGINS": "none",
        "VERL_USE_EXTERNAL_MODULES": "gmpo_kfp.in_verl.plugin",
    }
    assert run_fresh(env)[0] == "gmpo_kfp.in_verl.plugin"
    assert run_fresh({"VERL_USE_EXTERNAL_PLUGINS": "none"})[0] == "missing"


def test_geo_mean_is_untouched():
    assert verl_plugin.is_registered()
    assert core_algos.get_policy_loss_fn("gmpo") is verl_plugin.compute_policy_loss_gmpo
    assert core_algos.get_policy_loss_fn("geo_mean").__module__ == core_algos.__name__


def config(**info) -> ActorConfig:
    cfg = ActorConfig(
        strategy="fsdp",
        rollout_n=4,
        ppo_micro_batch_size_per_gpu=1,
        clip_ratio_low=0.4,
        clip_ratio_high=0.3,
    )
    cfg.global_batch_info.update(info)
    return cfg


def test_plugin_returns_verl_shaped_metrics_and_our_loss():
    b = random_batch(0)
    loss, metrics = verl_plugin.compute_policy_loss_gmpo(*b.args(), config=config())
    ours, our_metrics = gmpo_loss(*b.args(), clip_ratio_low=0.4, clip_ratio_high=0.3)
    assert loss.item() == pytest.approx(ours.item())
    assert set(metrics) == {f"actor/{n}" for n in METRIC_NAMES}
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["actor/ppo_kl"] == pytest.approx(our_metrics["ppo_kl"].item())


def test_plugin_applies_rollout_is_weights_per_sequence():
    b = random_batch(1)
    w = torch.rand(b.log_prob.shape, generator=torch.Generator().manual_seed(1)) + 0.5
    loss, _ = verl_plugin.compute_policy_loss_gmpo(*b.args(), config=config(), rollout_is_weights=w)
    verl_loss, _ = core_algos.get_policy_loss_fn("geo_mean")(
        *b.args(), config=config(), rollout_is_weights=w
    )
    assert loss.item() == pytest.approx(verl_loss.item(), rel=1e-5)


def test_plugin_errors_name_the_missing_setting():
    b = random_batch(2)
    with pytest.raises(ValueError, match="needs verl's actor config"):
        verl_plugin.compute_policy_loss_gmpo(*b.args())
    with pytest.raises(ValueError, match="global_batch_size is missing"):
        verl_plugin.compute_policy_loss_gmpo(*b.args(), config=config(dp_size=2))


# ------------------------------------------------------------------ split invariance


class TinyPolicy(torch.nn.Module):
    """log_prob = base + features . w: every row's log-probs depend on shared weights."""

    def __init__(self, batch, tokens, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(tokens, generator=g) * 0.3)
        self.features = torch.randn(batch, tokens, generator=g)

    def forward(self, base, rows):
        return base[rows] + self.features[rows] * self.w


def split_gradient(loss_fn, b, splits: list[list[int]], make_config) -> torch.Tensor:
    """verl's engine: per rank, sum micro-batch losses into one backward; DDP averages ranks.

    ``splits`` lists, per rank, the sizes of its micro-batches, in row order.
    """
    policy = TinyPolicy(*b.log_prob.shape, seed=0)
    base = b.log_prob.detach()
    dp = len(splits)
    rank_grads = []
    start = 0
    for sizes in splits:
        policy.zero_grad()
        for size in sizes:
            rows = torch.arange(start, start + size)
            start += size
            lp = policy(base, rows)
            loss, _ = loss_fn(
                b.old_log_prob[rows],
                lp,
                b.advantages[rows],
                b.response_mask[rows],
                config=make_config(dp),
            )
            loss.backward()
        rank_grads.append(policy.w.grad.clone())
    assert start == base.shape[0]
    return torch.stack(rank_grads).mean(0)


def full_gradient(b) -> torch.Tensor:
    policy = TinyPolicy(*b.log_prob.shape, seed=0)
    rows = torch.arange(b.log_prob.shape[0])
    loss, _ = gmpo_loss(
        b.old_log_prob,
        policy(b.log_prob.detach(), rows),
        b.advantages,
        b.response_mask,
        clip_ratio_low=0.4,
        clip_ratio_high=0.3,
    )
    loss.backward()
    return policy.w.grad


SPLITS = {
    "dp1-one-micro": [[24]],
    "dp1-two-micro": [[12, 12]],
    "dp1-four-micro": [[6, 6, 6, 6]],
    "dp2": [[6, 6], [6, 6]],
    "dp4": [[3, 3], [3, 3], [3, 3], [3, 3]],
    "dp2-uneven": [[7, 3, 2], [1, 11]],
    "dp4-uneven": [[5, 1], [2, 4], [9, 1], [2]],
}


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gmpo_plugin_gradient_is_split_invariant(split, seed):
    b = random_batch(seed, batch=24, tokens=16, scale=0.5)

    def make_config(dp):
        return config(dp_size=dp, global_batch_size=24, batch_num_tokens=None)

    got = split_gradient(verl_plugin.compute_policy_loss_gmpo, b, split, make_config)
    torch.testing.assert_close(got, full_gradient(b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "split",
    [v for k, v in SPLITS.items() if k != "dp1-one-micro"],
    ids=[k for k in SPLITS if k != "dp1-one-micro"],
)
def test_verl_geo_mean_is_not_split_invariant(split):
    """verl's geo_mean returns the micro-batch mean whatever the engine passes it."""
    b = random_batch(0, batch=24, tokens=16, scale=0.5)

    def make_config(dp):
        return config(dp_size=dp, global_batch_size=24, batch_num_tokens=None)

    got = split_gradient(core_algos.get_policy_loss_fn("geo_mean"), b, split, make_config)
    expected = full_gradient(b)
    assert not torch.allclose(got, expected, rtol=1e-3, atol=1e-5)
    # ... while a single micro-batch on one rank agrees with the mini-batch gradient
    one = split_gradient(core_algos.get_policy_loss_fn("geo_mean"), b, [[24]], make_config)
    torch.testing.assert_close(one, expected, rtol=1e-5, atol=1e-6)

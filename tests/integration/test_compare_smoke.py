"""gmpo compare end to end on the tiny model: one seed, a few steps, both regimes."""

from __future__ import annotations

import json

import yaml

from gmpo_kfp.config import config_to_dict
from tests.integration.test_trl_engine import data, tiny_config  # noqa: F401
from tests.unit.test_cli import gmpo


def test_compare_smoke_writes_report_plots_and_reuses_finished_runs(tmp_path, data):  # noqa: F811
    # the untrained tiny model earns no reward: an entropy bonus is what moves the weights
    overrides = {"trainer.total_steps": 2, "optim.lr": 5e-3, "algorithm.entropy_coeff": 0.5}
    cfg = tiny_config(tmp_path / "unused", data, **overrides)
    config_file = tmp_path / "study.yaml"
    config_file.write_text(yaml.safe_dump(config_to_dict(cfg)))
    out = tmp_path / "study"
    args = ("compare", "--config", str(config_file), "--seeds", "1", "--iterations", "3")
    first = gmpo(*args, "--output", str(out), "--no-progress")
    assert first.returncode == 0, first.stderr
    assert "[4/4] off-policy grpo seed 3" in first.stderr
    summary = json.loads((out / "summary.json").read_text())
    runs = {(r["regime"], r["loss"]): r for r in summary["runs"]}
    assert set(runs) == {
        (g, loss) for g in ("on-policy", "off-policy") for loss in ("gmpo", "grpo")
    }
    # one pass per batch: the policy that sampled is the one updated, ratios are exactly 1
    assert runs["on-policy", "gmpo"]["ratio_min"] == runs["on-policy", "gmpo"]["ratio_max"] == 1.0
    # three passes: ratios move away from 1
    assert runs["off-policy", "grpo"]["log_ratio_spread"] > 0
    assert all(r["steps"] == 2 and r["pass_at_1_after"] is not None for r in runs.values())
    report = (out / "report.md").read_text()
    assert "## Verdict" in report and "off-policy: GMPO" in report
    assert (out / "plots" / "off-policy_overview.png").read_bytes().startswith(b"\x89PNG")
    second = gmpo(*args, "--output", str(out), "--no-progress")
    assert second.returncode == 0, second.stderr
    assert "[1/4]" not in second.stderr  # every run was reused
    assert second.stdout == first.stdout


def test_compare_bad_losses_is_one_line(tmp_path):
    out = gmpo("compare", "--losses", "gmpo,ppo", "--output", str(tmp_path / "s"))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "--losses" in out.stderr
    assert not (tmp_path / "s").exists()

"""gmpo compare's summary, verdict, report and plots, on metrics files written here."""

from __future__ import annotations

import math

import pytest

from gmpo_kfp import metrics as M
from gmpo_kfp.config import ConfigError
from gmpo_kfp.study import compare as C


def write_run(root, regime, loss, seed, *, low, high, entropy, val_after):
    path = root / "runs" / regime / f"{loss}-s{seed}" / "metrics.jsonl"
    with M.MetricsWriter(path) as w:
        w.write(0, {M.val_metric("arithmetic"): 0.2})
        for step in range(1, 21):
            w.write(
                step,
                {
                    M.SCORE_MEAN: step / 20,
                    M.TOKEN_RATIO_MIN: low - step / 1000,
                    M.TOKEN_RATIO_MAX: high + step / 1000,
                    M.PG_CLIPFRAC: 0.01,
                    M.ENTROPY: entropy[step % len(entropy)],
                    M.PPO_KL: 1e-3,
                    M.TIME_PER_STEP: 0.1,
                },
            )
        w.write(20, {M.val_metric("arithmetic"): val_after})
    return path


def study(root, seeds=(1, 2)):
    runs = []
    for seed in seeds:
        for loss, low, high, ent in (
            ("gmpo", 0.8, 1.2, (0.60, 0.61)),
            ("grpo", 0.5, 1.8, (0.50, 0.70)),
        ):
            path = write_run(
                root, "off-policy", loss, seed, low=low, high=high, entropy=ent, val_after=0.5
            )
            runs.append(C.run_stats(path, regime="off-policy", loss=loss, seed=seed))
    return runs


def test_run_stats_reads_the_ratio_range_entropy_and_pass_at_1(tmp_path):
    path = write_run(
        tmp_path, "off-policy", "gmpo", 1, low=0.8, high=1.2, entropy=(0.6, 0.8), val_after=0.7
    )
    s = C.run_stats(path, regime="off-policy", loss="gmpo", seed=1)
    assert s.pass_at_1_before == 0.2 and s.pass_at_1_after == 0.7
    assert s.ratio_min == pytest.approx(0.78) and s.ratio_max == pytest.approx(1.22)
    assert 0.78 < s.ratio_p5 < 0.8 and 1.2 < s.ratio_p95 < 1.22
    assert s.entropy_mean == pytest.approx(0.7) and s.entropy_std == pytest.approx(0.1)
    assert s.steps == 20
    assert s.log_ratio_spread == pytest.approx(math.log(s.ratio_p95) - math.log(s.ratio_p5))


def test_verdict_says_which_claims_held(tmp_path):
    lines = C.verdict(study(tmp_path))
    assert len(lines) == 3
    assert lines[0].startswith("off-policy: GMPO showed a narrower token-ratio range than GRPO")
    assert lines[1].startswith("off-policy: GMPO showed steadier entropy")
    assert "tied on Pass@1 after" in lines[2]


def test_verdict_says_when_gmpo_lost_and_when_it_is_within_the_seed_spread(tmp_path):
    runs = []
    for seed, (g_high, r_high) in enumerate(((2.0, 1.5), (1.3, 1.6))):
        for loss, high in (("gmpo", g_high), ("grpo", r_high)):
            path = write_run(
                tmp_path, "on-policy", loss, seed, low=0.9, high=high, entropy=(0.5,), val_after=0.3
            )
            runs.append(C.run_stats(path, regime="on-policy", loss=loss, seed=seed))
    line = C.verdict(runs)[0]
    assert "did not show a narrower token-ratio range" in line
    assert "within the spread over seeds" in line


def test_report_and_plots(tmp_path):
    runs = study(tmp_path)
    plots = C.plot_study(tmp_path, runs)
    names = {p.name for p in plots}
    assert "off-policy_overview.png" in names
    assert {f"off-policy_{stem}.png" for stem in C.PLOTS} <= names
    for p in plots:
        assert p.read_bytes().startswith(b"\x89PNG")
    text = C.report_markdown(runs, C.verdict(runs), plots, tmp_path)
    assert "| off-policy | GMPO | 0.200 ± 0.000 | 0.500 ± 0.000 |" in text
    assert "![off-policy_overview](plots/off-policy_overview.png)" in text
    assert text.count("| off-policy | gmpo |") == 2  # one per seed


@pytest.mark.parametrize("text", ["gmpo", "gmpo,ppo", "gmpo,gmpo", ""])
def test_bad_losses_name_the_option(text):
    with pytest.raises(ConfigError, match="--losses"):
        C.parse_losses(text)


def test_regimes():
    assert C.regimes(1) == {"on-policy": 1}
    assert C.regimes(4) == {"on-policy": 1, "off-policy": 4}
    with pytest.raises(ConfigError, match="--iterations"):
        C.regimes(0)

"""The tiny model learns: held-out greedy Pass@1 is clearly higher after GMPO than before.

A smaller version of the README's learning table (`tiny-cpu`, the arithmetic task):
the same supervised warm-up to Pass@1 0.18, then 800 GMPO steps instead of the
preset's 2000 (its lr and decay, 50 lr warm-up steps), validated on 500 held-out
problems.
"""

from __future__ import annotations

from gmpo_kfp.config import apply_overrides
from gmpo_kfp.data.arithmetic import arithmetic_rows
from gmpo_kfp.data.schema import write_rl_parquet
from gmpo_kfp.engines.training import train
from gmpo_kfp.metrics import PASS_AT_1, read_metrics
from gmpo_kfp.presets import load_preset


def test_gmpo_raises_held_out_pass_at_1_on_the_tiny_model(tmp_path):
    val = write_rl_parquet(arithmetic_rows("test", limit=500), tmp_path / "val.parquet")
    config = apply_overrides(
        load_preset("tiny-cpu"),
        [
            f"trainer.output_dir={tmp_path / 'run'}",
            f"data.val_files={val}",
            "trainer.total_steps=800",
            "optim.warmup_steps=50",
            # the preset's lr and decay; a higher peak for the shorter schedule (7e-4 with
            # decay 1.0) collapsed from this warm-up: 0.278 -> 0.008
            "trainer.test_freq=800",
            "trainer.save_freq=-1",
        ],
    )
    result = train(config, progress=False)
    assert result.sft is not None and result.sft["reached"]
    before, after = result.pass_at_1_before, result.pass_at_1_after
    assert before is not None and after is not None
    # the warm-up stops near its target (0.18 on the check prompts; 0.27 on the 2000
    # held-out problems for this seed): RL starts from a weak model
    assert before <= 0.32, before
    # measured 0.278 -> 0.854 (2026-12-04, answers zero-padded); 0.180 -> 0.216 before
    assert after >= before + 0.02, (before, after)
    records = list(read_metrics(result.metrics_file))
    assert [r["step"] for r in records if PASS_AT_1 in r["data"]] == [0, 800]

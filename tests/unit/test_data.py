"""verl RL parquet: validation by row and field, atomic writes, the arithmetic task."""

from __future__ import annotations

import copy

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gmpo_kfp.data import DataError, read_rl_parquet, validate_row, validate_rows, write_rl_parquet
from gmpo_kfp.data.arithmetic import SPLITS, arithmetic_rows

GOOD = arithmetic_rows("train", limit=1)[0]


def broken(path: tuple, value):
    row = copy.deepcopy(GOOD)
    node = row
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return row


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("data_source",), KeyError, "row 3: data_source is missing"),
        (("data_source",), "", "row 3: data_source must be a non-empty string"),
        (("prompt",), [], "row 3: prompt must be a non-empty list"),
        (("prompt", 0, "role"), "robot", "row 3: prompt[0].role must be one of"),
        (("prompt", 0, "content"), " ", "row 3: prompt[0].content must be non-empty text"),
        (("reward_model", "style"), "model", "row 3: reward_model.style must be 'rule'"),
        (("reward_model", "ground_truth"), None, "row 3: reward_model.ground_truth must be"),
        (("reward_model", "ground_truth"), [], "row 3: reward_model.ground_truth must be"),
        (("extra_info",), "x", "row 3: extra_info must be a mapping"),
    ],
)
def test_bad_rows_are_named_by_index_and_field(path, value, message):
    with pytest.raises(DataError) as info:
        validate_row(broken(path, value), 3)
    assert str(info.value).startswith(message)


def test_list_ground_truth_and_system_turn_are_valid():
    row = broken(("reward_model", "ground_truth"), ["1/2", "0.5"])
    row["prompt"].insert(0, {"role": "system", "content": "Think."})
    validate_row(row, 0)
    row["prompt"].append({"role": "assistant", "content": "ok"})
    with pytest.raises(DataError, match="prompt must end with a user message"):
        validate_row(row, 0)


def test_round_trip_and_atomic_write(tmp_path):
    rows = arithmetic_rows("test", limit=50)
    path = write_rl_parquet(rows, tmp_path / "d" / "test.parquet")
    assert read_rl_parquet(path) == rows
    with pytest.raises(DataError, match="row 1: prompt"):
        write_rl_parquet([rows[0], broken(("prompt",), [])], tmp_path / "bad.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # nothing half-written


def test_bad_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_rl_parquet(tmp_path / "none.parquet")
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(DataError, match="is empty"):
        read_rl_parquet(tmp_path / "empty.parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="is not a readable parquet file"):
        read_rl_parquet(tmp_path / "junk.parquet")
    pq.write_table(pa.table({"question": ["1+1"], "answer": ["2"]}), tmp_path / "qa.parquet")
    with pytest.raises(DataError, match="lacks the columns data_source, prompt, ability"):
        read_rl_parquet(tmp_path / "qa.parquet")
    with pytest.raises(DataError, match="no rows"):
        validate_rows([])


def test_arithmetic_splits_are_disjoint_seeded_and_correct():
    problems = {s: {r["prompt"][0]["content"] for r in arithmetic_rows(s)} for s in SPLITS}
    assert sum(map(len, problems.values())) == 10_000
    assert not problems["train"] & problems["test"]
    assert not problems["warmup"] & (problems["train"] | problems["test"])
    assert arithmetic_rows("train", seed=3, limit=5) == arithmetic_rows("train", seed=3, limit=5)
    assert arithmetic_rows("train", seed=3, limit=5) != arithmetic_rows("train", seed=4, limit=5)
    for row in arithmetic_rows("test", limit=100):
        info = row["extra_info"]
        truth = row["reward_model"]["ground_truth"]
        assert len(truth) == 3 and int(truth) == info["a"] + info["b"]  # zero-padded: 052
    validate_rows(arithmetic_rows("warmup"))
    with pytest.raises(ValueError, match="split must be one of warmup, train, test"):
        arithmetic_rows("dev")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(row=st.dictionaries(st.sampled_from([*GOOD, "x"]), json_values, max_size=6))
def test_fuzzed_rows_raise_only_data_errors(row):
    try:
        validate_row(row, 0)
    except DataError as exc:
        assert str(exc).startswith("row 0: ")

"""verl's RL parquet: one row per problem, the same file for both engines.

A row::

    data_source   str                                   selects the grader (gmpo_kfp.reward)
    prompt        list of {"role": str, "content": str}  chat messages, user turn last
    ability       str                                   e.g. "math"
    reward_model  {"style": "rule", "ground_truth": str or list of str}
    extra_info    {"split": str, "index": int, ...}     free-form, optional keys

Bad rows are reported by index and field (:class:`DataError`); files are written
to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gmpo_kfp.errors import UserError

REQUIRED_COLUMNS = ("data_source", "prompt", "ability", "reward_model", "extra_info")
ROLES = ("system", "user", "assistant")


class DataError(UserError, ValueError):
    """A data file or row is wrong; the message names the row, the field and the fix."""


def validate_row(row: Mapping[str, Any], index: int) -> None:
    """Raise :class:`DataError` naming ``row[index].field`` when the row breaks the schema."""

    def bad(field: str, problem: str) -> DataError:
        return DataError(f"row {index}: {field} {problem}")

    if not isinstance(row, Mapping):
        raise DataError(f"row {index}: must be a mapping of columns, got {type(row).__name__}")
    for column in REQUIRED_COLUMNS:
        if column not in row or row[column] is None:
            raise bad(column, f"is missing (required columns: {', '.join(REQUIRED_COLUMNS)})")
    if not isinstance(row["data_source"], str) or not row["data_source"]:
        raise bad("data_source", "must be a non-empty string, e.g. 'openai/gsm8k'")
    if not isinstance(row["ability"], str):
        raise bad("ability", "must be a string, e.g. 'math'")
    prompt = row["prompt"]
    if not isinstance(prompt, (list, tuple)) or not prompt:
        raise bad("prompt", "must be a non-empty list of chat messages {role, content}")
    for i, message in enumerate(prompt):
        if not isinstance(message, Mapping):
            raise bad(f"prompt[{i}]", "must be a mapping with role and content")
        if message.get("role") not in ROLES:
            raise bad(f"prompt[{i}].role", f"must be one of {', '.join(ROLES)}")
        if not isinstance(message.get("content"), str) or not message["content"].strip():
            raise bad(f"prompt[{i}].content", "must be non-empty text")
    if prompt[-1].get("role") != "user":
        raise bad("prompt", "must end with a user message")
    reward = row["reward_model"]
    if not isinstance(reward, Mapping):
        raise bad("reward_model", "must be a mapping {style, ground_truth}")
    if reward.get("style") != "rule":
        raise bad("reward_model.style", "must be 'rule' (rule-based grading)")
    truth = reward.get("ground_truth")
    answers = list(truth) if isinstance(truth, (list, tuple)) else [truth]
    if not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        raise bad("reward_model.ground_truth", "must be a non-empty string or list of strings")
    if not isinstance(row["extra_info"], Mapping):
        raise bad("extra_info", "must be a mapping (e.g. {split, index})")


def validate_rows(rows: Iterable[Mapping[str, Any]]) -> int:
    """Validate every row; returns the count. An empty set of rows is an error."""
    count = 0
    for index, row in enumerate(rows):
        validate_row(row, index)
        count += 1
    if count == 0:
        raise DataError("no rows: the data set is empty; give a file with at least one row")
    return count


def write_rl_parquet(rows: list[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Validate and write rows to ``path`` atomically (temporary file, then rename)."""
    validate_rows(rows)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([dict(r) for r in rows])
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_rl_parquet(path: str | os.PathLike, *, validate: bool = True) -> list[dict[str, Any]]:
    """Read an RL parquet file into row dicts, validated unless ``validate=False``."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {p} does not exist: pass the path of a verl RL parquet file")
    if p.stat().st_size == 0:
        raise DataError(f"data file {p} is empty: regenerate or re-download it")
    try:
        table = pq.read_table(p)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"data file {p} is not a readable parquet file ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(
            f"data file {p} lacks the columns {', '.join(missing)}: it is not verl RL parquet "
            f"(required: {', '.join(REQUIRED_COLUMNS)})"
        )
    rows = table.to_pylist()
    if validate:
        try:
            validate_rows(rows)
        except DataError as exc:
            raise DataError(f"data file {p}: {exc}") from None
    return rows


def read_rl_files(files: Iterable[str], field: str) -> list[dict[str, Any]]:
    """Every row of the RL parquet ``files`` of config field ``field`` (named in errors)."""
    rows: list[dict[str, Any]] = []
    for path in files:
        if not Path(path).exists():
            raise DataError(f"{field}: {path} does not exist; give a verl RL parquet file")
        try:
            rows.extend(read_rl_parquet(path))
        except DataError as exc:
            raise DataError(f"{field}: {exc}") from None
    return rows

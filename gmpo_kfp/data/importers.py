"""Importers: the recipes' data sources, from local files in their published schemas, to RL rows.

=====================  ==========================================  ==========================
source                 published schema (parquet, jsonl or json)   ground truth
=====================  ==========================================  ==========================
``gsm8k``              ``question``, ``answer`` (``... #### 72``)  the number after ``####``
``math``               ``problem``, ``solution``, ``level``,       the solution's last
                       ``type`` (MATH-lighteval)                   ``\\boxed{}``; ``levels``
                                                                   filters ("Level 3" -> 3)
``dapo-math-17k``      verl RL rows already                        as given (validated)
``aime-2024``          verl RL rows; or ``problem``, ``answer``;   as given; ``answer``;
                       or openai-evals' ``input`` (chat), ``ideal``  ``ideal`` (``"079"``)
``math_lvl3to5_8k``    ``problem``, ``answer`` (the paper's data)  ``answer``
``arithmetic``         none: generated (:mod:`.arithmetic`)        the sum
=====================  ==========================================  ==========================

Files: parquet, JSON lines or JSON, each optionally gzip-compressed (``.jsonl.gz``).
Records nested one level, as oe-eval's request files keep each problem under ``doc``,
are unwrapped where the top level lacks the fields; ``fields`` maps our field names to
other ones (dotted for nesting: ``{"question": "doc.question"}``).

Prompt templates (:data:`TEMPLATES`) are the ones verl's preprocessing scripts
and the paper use; each source has a default, and any source takes any template.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from gmpo_kfp.data.schema import DataError, read_rl_parquet, validate_rows

# verl examples/data_preprocess/gsm8k.py and math_dataset.py append an instruction to the
# problem; the paper (Qwen-math template) puts it in a system turn.
GSM8K_INSTRUCTION = 'Let\'s think step by step and output the final answer after "####".'
MATH_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."
QWEN_MATH_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
# DAPO-Math-17k's prompt (the DAPO recipe's data, and its AIME-2024 validation rows)
DAPO_PREFIX = (
    "Solve the following math problem step by step. The last line of your response should "
    "be of the form Answer: $Answer (without quotes) where $Answer is the answer to the "
    "problem.\n\n"
)
DAPO_SUFFIX = '\n\nRemember to put your answer on its own line after "Answer:".'
#: Where a record keeps its fields when it nests them (oe-eval's request files).
NESTED_UNDER = ("doc",)


def _suffix(instruction: str) -> Callable[[str], list[dict[str, str]]]:
    return lambda problem: [{"role": "user", "content": f"{problem} {instruction}"}]


TEMPLATES: dict[str, Callable[[str], list[dict[str, str]]]] = {
    "verl-gsm8k": _suffix(GSM8K_INSTRUCTION),
    "verl-math": _suffix(MATH_INSTRUCTION),
    "qwen-math": lambda problem: [
        {"role": "system", "content": QWEN_MATH_SYSTEM},
        {"role": "user", "content": problem},
    ],
    "plain": lambda problem: [{"role": "user", "content": problem}],
    "dapo": lambda problem: [{"role": "user", "content": f"{DAPO_PREFIX}{problem}{DAPO_SUFFIX}"}],
}


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a local parquet, JSON-lines or JSON (list of objects) file, gzipped or not."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"source file {p} does not exist: give a local parquet or jsonl file")
    if p.stat().st_size == 0:
        raise DataError(f"source file {p} is empty: re-download or regenerate it")
    gz = p.suffix.lower() == ".gz"
    suffix = Path(p.stem).suffix.lower() if gz else p.suffix.lower()

    def text() -> str:
        return gzip.decompress(p.read_bytes()).decode("utf-8") if gz else p.read_text("utf-8")

    try:
        if suffix == ".parquet" and not gz:
            return pq.read_table(p).to_pylist()
        if suffix in (".jsonl", ".ndjson"):
            return [json.loads(line) for line in text().splitlines() if line.strip()]
        if suffix == ".json":
            data = json.loads(text())
            if isinstance(data, list):
                return data
            raise DataError(f"source file {p}: a .json source must hold a list of objects")
    except (json.JSONDecodeError, OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"source file {p} cannot be read ({exc})") from None
    except Exception as exc:  # pyarrow's errors
        raise DataError(f"source file {p} cannot be read ({exc})") from None
    raise DataError(
        f"source file {p}: unknown format {p.name!r}; use .parquet, .jsonl or .json "
        "(.jsonl and .json may be gzipped: .jsonl.gz)"
    )


def _get(record: dict, path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def reshape(
    records: Sequence[dict], needed: Sequence[str], fields: dict[str, str] | None = None
) -> list[dict]:
    """Records with ``needed`` at their top level: through the ``fields`` map (ours ->
    theirs, dotted for nesting), or unwrapped from :data:`NESTED_UNDER` where the top
    level lacks them and the nested record has them."""
    fields = dict(fields or {})
    if records and not fields:
        first = records[0]
        for key in NESTED_UNDER:
            inner = first.get(key)
            if (
                isinstance(inner, dict)
                and not any(f in first for f in needed)
                and all(f in inner for f in needed)
            ):
                return [dict(r.get(key) or {}) for r in records]
    if not fields:
        return list(records)
    out = []
    for r in records:
        row = dict(r)
        for ours, theirs in fields.items():
            row[ours] = _get(r, theirs)
        out.append(row)
    return out


def _need(record: dict, field: str, index: int, source: str) -> Any:
    value = record.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{source} record {index}: field {field!r} is missing or empty")
    return value


def _row(data_source: str, prompt: list, truth: Any, split: str, index: int, **extra: Any) -> dict:
    return {
        "data_source": data_source,
        "prompt": prompt,
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": truth},
        "extra_info": {"split": split, "index": index, **extra},
    }


def _qa_rows(
    records: Sequence[dict],
    *,
    name: str,
    data_source: str,
    question: str,
    truth: Callable[[dict, int], str],
    split: str,
    template: str,
) -> list[dict]:
    render = TEMPLATES[template]
    rows = []
    for i, r in enumerate(records):
        text = _need(r, question, i, name)
        extra = {"question": text} if name == "gsm8k" else {}
        rows.append(_row(data_source, render(text), truth(r, i), split, i, **extra))
    return rows


def _gsm8k_truth(record: dict, index: int) -> str:
    answer = _need(record, "answer", index, "gsm8k")
    if "####" not in answer:
        raise DataError(f"gsm8k record {index}: field 'answer' has no '#### <number>' line")
    return answer.split("####")[-1].strip().replace(",", "")


def gsm8k_rows(records: Sequence[dict], *, split: str, template: str = "verl-gsm8k") -> list[dict]:
    """GSM8K (``openai/gsm8k``): the answer after ``####``, commas removed."""
    spec = {"data_source": "openai/gsm8k", "question": "question", "truth": _gsm8k_truth}
    return _qa_rows(records, name="gsm8k", split=split, template=template, **spec)


def math_rows(
    records: Sequence[dict],
    *,
    split: str,
    template: str = "verl-math",
    levels: Sequence[int] | None = None,
    data_source: str = "DigitalLearningGmbH/MATH-lighteval",
) -> list[dict]:
    """MATH: the answer is the solution's last ``\\boxed{}``; ``levels`` keeps those levels."""
    from gmpo_kfp.reward import last_boxed

    render = TEMPLATES[template]
    wanted = set(levels) if levels else None
    rows = []
    for i, r in enumerate(records):
        problem = _need(r, "problem", i, "math")
        solution = _need(r, "solution", i, "math")
        level = _level(r.get("level"))
        if wanted is not None and level not in wanted:
            continue
        truth = last_boxed(solution)
        if truth is None:
            raise DataError(f"math record {i}: field 'solution' has no \\boxed{{}} answer")
        extra = {"level": level, "type": r.get("type")}
        rows.append(_row(data_source, render(problem), truth, split, i, **extra))
    return rows


def _level(value: Any) -> int | None:
    """``"Level 3"`` or ``3`` -> 3; ``"Level ?"`` (a few MATH rows) -> None."""
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        digits = "".join(ch for ch in value if ch.isdigit())
        return int(digits) if digits else None
    return None


def _paper_truth(record: dict, index: int) -> str:
    return str(_need(record, "answer", index, "math_lvl3to5_8k"))


def paper_rows(records: Sequence[dict], *, split: str, template: str = "qwen-math") -> list[dict]:
    """The paper's ``math_lvl3to5_8k`` (``problem``, ``answer``), Qwen-math template."""
    spec = {"data_source": "math_lvl3to5_8k", "question": "problem", "truth": _paper_truth}
    return _qa_rows(records, name="math_lvl3to5_8k", split=split, template=template, **spec)


def rl_rows(records: Sequence[dict], *, split: str, template: str | None = None) -> list[dict]:
    """Sources published as verl RL rows (DAPO-Math-17k, AIME-2024): validated as they are."""
    rows = [dict(r) for r in records]
    validate_rows(rows)
    return rows


def _evals_problem(record: dict) -> str | None:
    """The user turn of an openai-evals sample (``input``: chat messages)."""
    turns = record.get("input")
    if isinstance(turns, list):
        users = [t.get("content") for t in turns if isinstance(t, dict) and t.get("role") == "user"]
        return users[-1] if users else None
    return None


def aime_rows(records: Sequence[dict], *, split: str, template: str = "dapo") -> list[dict]:
    """AIME as verl RL rows (validated as they are), as ``problem`` / ``answer`` records,
    or as openai-evals samples (``input`` chat, ``ideal``: the zero-padded answer)."""
    if records and "prompt" in records[0] and "reward_model" in records[0]:
        return rl_rows(records, split=split)
    render = TEMPLATES[template]
    rows = []
    for i, r in enumerate(records):
        problem = r.get("problem") or _evals_problem(r)
        if not problem:
            raise DataError(
                f"aime-2024 record {i}: no problem: give verl RL rows, problem / answer "
                "fields, or openai-evals samples (input, ideal)"
            )
        answer = r.get("answer", r.get("ideal"))
        if answer is None or not str(answer).strip():
            raise DataError(f"aime-2024 record {i}: field 'answer' (or 'ideal') is missing")
        rows.append(_row("aime-2024", render(problem), str(answer).strip(), split, i))
    return rows


#: source name -> function of (records, split=..., template=...) giving RL rows
IMPORTERS: dict[str, Callable[..., list[dict]]] = {
    "gsm8k": gsm8k_rows,
    "math": math_rows,
    "math_lvl3to5_8k": paper_rows,
    "dapo-math-17k": rl_rows,
    "aime-2024": aime_rows,
}

#: The fields each importer reads (what :func:`reshape` brings to the top level).
NEEDED: dict[str, tuple[str, ...]] = {
    "gsm8k": ("question", "answer"),
    "math": ("problem", "solution"),
    "math_lvl3to5_8k": ("problem", "answer"),
    "dapo-math-17k": ("prompt", "reward_model"),
    "aime-2024": ("problem", "answer"),
}


def import_source(
    source: str,
    path: str | os.PathLike | None = None,
    *,
    split: str = "train",
    template: str | None = None,
    levels: Sequence[int] | None = None,
    limit: int | None = None,
    seed: int = 0,
    fields: dict[str, str] | None = None,
) -> list[dict]:
    """RL rows of ``source`` read from ``path`` (``arithmetic`` is generated, no path).

    ``fields``: our field names -> the file's (dotted for nested ones), see :func:`reshape`.
    """
    if template is not None and template not in TEMPLATES:
        raise DataError(f"template must be one of {', '.join(TEMPLATES)}; got {template!r}")
    if source == "arithmetic":
        from gmpo_kfp.data.arithmetic import arithmetic_rows

        rows = arithmetic_rows(split, seed=seed)
    elif source in IMPORTERS:
        if path is None:
            raise DataError(f"source {source}: give the path of its local file")
        if source == "dapo-math-17k":
            rows = read_rl_parquet(path) if str(path).endswith(".parquet") else None
            rows = rows if rows is not None else rl_rows(read_records(path), split=split)
        else:
            records = reshape(read_records(path), NEEDED[source], fields)
            kwargs: dict[str, Any] = {"split": split}
            if template is not None:
                kwargs["template"] = template
            if levels is not None:
                if source != "math":
                    raise DataError("levels: only the math source has levels; drop the filter")
                kwargs["levels"] = levels
            rows = IMPORTERS[source](records, **kwargs)
    else:
        known = ", ".join(["arithmetic", *IMPORTERS])
        raise DataError(f"source must be one of {known}; got {source!r}")
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise DataError(f"source {source}: no rows left (check the file and the level filter)")
    return rows

"""The built-in ``arithmetic`` task: 2-digit addition that a laptop CPU model can learn.

Problems ``a+b`` with a, b in [0, 99]; the ground truth is the sum in three digits,
zero-padded as the operands are (``07+45=`` -> ``052``), so each position of an answer
always holds the same digit (hundreds, tens, units) whatever the sum. The grader
compares values, so ``52`` is right too; the fixed width is what the supervised
warm-up teaches. With unpadded sums (``52``, ``142``) the first character meant the
tens or the hundreds by the answer's length, and the tiny model learnt the sums of 100
and more late and by chance: a seed whose RL never did stayed near 0.5 (sums under
100 right, the others at 0.1), and the warm-up needed twice the steps. Every
ordered pair is assigned to exactly one split by a seeded shuffle, so the splits
are disjoint (``warmup`` for an optional supervised warm-up, ``train`` for RL,
``test`` held out) and the same seed always gives the same problems.
"""

from __future__ import annotations

import random
from typing import Any

DATA_SOURCE = "arithmetic"
SPLITS = ("warmup", "train", "test")
#: Share of the 10,000 problems in each split.
DEFAULT_FRACTIONS = {"warmup": 0.3, "train": 0.5, "test": 0.2}


def problem_text(a: int, b: int) -> str:
    """The plain-text prompt a character-level model reads: ``07+45=``."""
    return f"{a:02d}+{b:02d}="


def answer_text(total: int) -> str:
    """The ground truth of a sum: three digits, zero-padded (``52`` -> ``052``)."""
    return f"{total:03d}"


def arithmetic_rows(
    split: str,
    *,
    seed: int = 0,
    limit: int | None = None,
    fractions: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """verl RL rows of one split; ``limit`` keeps the first N of it."""
    fractions = fractions or DEFAULT_FRACTIONS
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    if set(fractions) != set(SPLITS) or any(f < 0 for f in fractions.values()):
        raise ValueError(f"fractions must give a share >= 0 to each of {', '.join(SPLITS)}")
    pairs = [(a, b) for a in range(100) for b in range(100)]
    random.Random(seed).shuffle(pairs)
    total = sum(fractions.values())
    bounds, start = {}, 0
    for name in SPLITS:
        end = start + round(len(pairs) * fractions[name] / total)
        bounds[name] = (start, min(end, len(pairs)))
        start = end
    lo, hi = bounds[split]
    chosen = pairs[lo:hi] if limit is None else pairs[lo:hi][:limit]
    return [
        {
            "data_source": DATA_SOURCE,
            "prompt": [{"role": "user", "content": problem_text(a, b)}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": answer_text(a + b)},
            "extra_info": {"split": split, "index": i, "a": a, "b": b},
        }
        for i, (a, b) in enumerate(chosen)
    ]

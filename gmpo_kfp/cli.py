"""The ``gmpo`` command: parses arguments, calls one library function, prints.

Heavy imports (torch, verl, kfp) happen inside the subcommands, so ``gmpo --help``
and ``gmpo --version`` answer at once. A bad input ends with one line on stderr
(``gmpo: error: ...``) and exit code 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gmpo_kfp import __version__

EXIT_USAGE = 2


def _cmd_losses(args: argparse.Namespace) -> int:
    from gmpo_kfp import objective

    for name in objective.policy_loss_names():
        doc = (objective.get_policy_loss(name).__doc__ or "").strip().splitlines()[0]
        print(f"{name:6s} {doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gmpo",
        description=(
            "Train LLMs with GMPO (Geometric-Mean Policy Optimization) as a Kubeflow "
            "pipeline: verl on a cluster, TRL on one machine."
        ),
    )
    parser.add_argument("--version", action="version", version=f"gmpo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    losses = sub.add_parser("losses", help="list the registered policy losses")
    losses.set_defaults(func=_cmd_losses)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"gmpo: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

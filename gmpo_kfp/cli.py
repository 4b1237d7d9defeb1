"""The ``gmpo`` command: parses arguments, calls one library function, prints.

Heavy imports (torch, verl, kfp) happen inside the subcommands, so ``gmpo --help``
and ``gmpo --version`` answer at once. A bad input ends with one line on stderr
(``gmpo: error: ...``) and exit code 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from gmpo_kfp.errors import UsageError, UserError
from gmpo_kfp.version import __version__

EXIT_USAGE = 2


def _cmd_losses(args: argparse.Namespace) -> int:
    from gmpo_kfp import objective

    for name in objective.policy_loss_names():
        doc = (objective.get_policy_loss(name).__doc__ or "").strip().splitlines()[0]
        print(f"{name:6s} {doc}")
    return 0


def _cmd_presets_list(args: argparse.Namespace) -> int:
    from gmpo_kfp.presets import preset_names, preset_summary

    names = preset_names()
    width = max(map(len, names))
    for name in names:
        print(f"{name:{width}s}  {preset_summary(name)}")
    return 0


def _cmd_presets_show(args: argparse.Namespace) -> int:
    from gmpo_kfp.presets import load_preset, preset_text

    load_preset(args.name)  # validates, and refuses an unknown name in one line
    print(preset_text(args.name), end="")
    return 0


def resolve_config(args: argparse.Namespace):
    """--preset / --config, then --set overrides, as one validated config."""
    from gmpo_kfp.config import apply_overrides, load_config
    from gmpo_kfp.presets import DEFAULT_PRESET, load_preset

    if args.config and args.preset:
        raise UsageError("--config and --preset both given: pass one of them")
    config = load_config(args.config) if args.config else load_preset(args.preset or DEFAULT_PRESET)
    return apply_overrides(config, args.set or [])


def _cmd_config(args: argparse.Namespace) -> int:
    import yaml

    config = resolve_config(args)
    if args.format == "verl":
        import shlex

        from gmpo_kfp.engines.verl import verl_command

        cmd = [shlex.quote(part) for part in verl_command(config)]
        print(" ".join(cmd[:3]) + "".join(f" \\\n    {part}" for part in cmd[3:]))
    else:
        from gmpo_kfp.config import config_to_dict

        print(yaml.safe_dump(config_to_dict(config), sort_keys=False), end="")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from gmpo_kfp.config import with_values
    from gmpo_kfp.engines.training import train

    values = {"trainer.resume": args.resume, "trainer.output_dir": args.output}
    config = with_values(resolve_config(args), {k: v for k, v in values.items() if v})
    result = train(config, progress=not args.no_progress)
    print(result.summary())
    if args.json:
        from gmpo_kfp.engines.training import result_to_dict

        _write_json(args.json, result_to_dict(result))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from gmpo_kfp.evaluation.evaluate import evaluate

    result = evaluate(
        args.model,
        args.data,
        protocol=args.protocol,
        n=args.n,
        max_new_tokens=args.max_new_tokens,
        limit=args.limit,
        seed=args.seed,
        backend=args.backend,
    )
    width = max(len(s) for s in result.pass_at_1)
    for source, value in result.pass_at_1.items():
        print(f"{source:<{width}}  {value:.4f}")
    print(f"{'mean':<{width}}  {result.mean:.4f}  ({result.problems} problems, {result.protocol})")
    if args.json:
        _write_json(args.json, result.as_dict())
    return 0


def settings_registry_uri() -> str:
    from gmpo_kfp import settings

    return settings.REGISTRY_URI


def _kueue(args: argparse.Namespace) -> Any:
    """``--queue`` / ``--priority-class`` as the typed (validated) Kueue value."""
    from gmpo_kfp.config import ConfigError, KueueConfig

    try:
        return KueueConfig(queue=args.queue, priority_class=args.priority_class)
    except ConfigError as exc:  # named as the user typed them
        flags = {"kueue.queue": "--queue", "kueue.priority_class": "--priority-class"}
        text = str(exc)
        for field, flag in flags.items():
            text = text.replace(field, flag)
        raise ConfigError(text) from None


def _add_kueue(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--queue",
        metavar="NAME",
        help="Kueue LocalQueue: the train and evaluate pods and a multi-node RayJob queue there",
    )
    parser.add_argument(
        "--priority-class", metavar="NAME", help="Kueue WorkloadPriorityClass (with --queue)"
    )


def _cmd_compile(args: argparse.Namespace) -> int:
    from gmpo_kfp.workflow.kfp_runs import compile_pipeline

    if args.preset:
        from gmpo_kfp.presets import load_preset

        load_preset(args.preset)  # an unknown preset is an error before anything is written
    path = compile_pipeline(args.output, _kueue(args))
    print(f"compiled the gmpo_training pipeline to {path}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from gmpo_kfp.presets import DEFAULT_PRESET
    from gmpo_kfp.workflow.kfp_runs import run_local

    if not args.local:
        print(
            "gmpo: error: run needs --local (use `gmpo submit --host URL` for a cluster)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    result = run_local(
        args.output,
        preset=args.preset or DEFAULT_PRESET,
        overrides=args.set or [],
        params=args.param or [],
        runner=args.runner,
        verbose=args.verbose,
    )
    print(result.summary())
    return 0


def _cmd_submit(args: argparse.Namespace) -> int:
    from gmpo_kfp.presets import DEFAULT_PRESET
    from gmpo_kfp.workflow.kfp_runs import submit

    out = submit(
        args.host,
        experiment=args.experiment,
        preset=args.preset or DEFAULT_PRESET,
        overrides=args.set or [],
        params=args.param or [],
        wait_s=args.wait,
        source_prefix=args.source_prefix or "",
        namespace=args.namespace,
        kueue=_kueue(args),
    )
    print(f"run {out['run_id']}\n{out['url']}")
    return 0


def _cmd_schedule(args: argparse.Namespace) -> int:
    from gmpo_kfp.cluster.schedule import schedule
    from gmpo_kfp.presets import DEFAULT_PRESET

    out = schedule(
        args.host,
        args.cron,
        preset=args.preset or DEFAULT_PRESET,
        overrides=args.set or [],
        params=args.param or [],
        experiment=args.experiment,
        name=args.name,
        namespace=args.namespace,
        kueue=_kueue(args),
    )
    print(f"recurring run {out['recurring_run_id']} (KFP cron {out['cron']})")
    return 0


def _cmd_registry_list(args: argparse.Namespace) -> int:
    import json

    from gmpo_kfp.workflow.registry import format_versions, list_versions

    rows = list_versions(args.registry, args.name)
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
    else:
        print(format_versions(args.name, rows))
    return 0


def _cmd_registry_show(args: argparse.Namespace) -> int:
    import json

    from gmpo_kfp.storage import open_store
    from gmpo_kfp.workflow.registry import aliases, format_manifest, resolve

    store = open_store(args.registry)
    manifest = resolve(args.registry, args.name, args.version, store=store)
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
        return 0
    tags = [a for a, v in sorted(aliases(store, args.name).items()) if v == manifest["version"]]
    print(format_manifest(manifest, tags))
    return 0


def _cmd_manifests(args: argparse.Namespace) -> int:
    from gmpo_kfp.cluster.manifests import write_manifests

    for path in write_manifests(args.output):
        print(path)
    return 0


def _cmd_images(args: argparse.Namespace) -> int:
    from gmpo_kfp import settings

    if args.name in ("build", "wheelhouse"):
        return _images_build(args)
    if args.targets or args.base or args.wheelhouse or args.offline or args.dry_run:
        raise UsageError("images: build options need `gmpo images build` (or wheelhouse)")
    refs = settings.CPU_IMAGES if args.variant == "cpu" else settings.IMAGES
    if args.name:
        if args.name not in refs:
            raise UsageError(f"image {args.name!r}: unknown; use one of {', '.join(refs)}")
        print(refs[args.name])
        return 0
    for name, ref in refs.items():
        print(f"{name:8s} {ref}")
    return 0


def _images_build(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from gmpo_kfp.containers.build import build_images, repo_root, summary, wheelhouse
    from gmpo_kfp.containers.engine import Docker
    from gmpo_kfp.containers.specs import WHEELS_IN_CONTEXT, images_of

    specs = images_of(args.variant or "cuda", args.targets)
    index = None if args.index is None else args.index
    wheels = Path(args.wheelhouse) if args.wheelhouse else None
    if args.offline and wheels is None:
        wheels = repo_root() / WHEELS_IN_CONTEXT
    if args.name == "wheelhouse":
        folder = wheels or repo_root() / WHEELS_IN_CONTEXT
        for spec in specs:
            print(wheelhouse(spec, repo_root(), folder, index))
        return 0
    host = args.docker_host or os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    built = build_images(
        Docker(host),
        specs,
        base=args.base or "registry",
        wheels_dir=wheels,
        make_wheels=wheels is not None and not args.offline,
        index=index,
        dry_run=args.dry_run,
    )
    if built:
        print(summary(built))
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from gmpo_kfp.study.report import plot_files

    for path in plot_files(args.files, args.output):
        print(path)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from gmpo_kfp.study.compare import compare, parse_losses

    losses = parse_losses(args.losses)
    result = compare(
        resolve_config(args),
        losses=losses,
        seeds=args.seeds,
        iterations=args.iterations,
        output_dir=args.output,
        progress=not args.no_progress,
    )
    for line in result.verdict:
        print(line)
    print(f"report      {result.report}")
    return 0


def _write_json(path: str, data: dict) -> None:
    import json

    from gmpo_kfp.storage import write_atomic

    write_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--preset, --config and --set, shared by every command that takes a config."""
    parser.add_argument("--preset", help="a named preset (gmpo presets list); default tiny-cpu")
    parser.add_argument("--config", help="a YAML config file instead of a preset")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a field, e.g. --set optim.lr=1e-6 (repeatable)",
    )


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

    presets = sub.add_parser("presets", help="list or show the training presets")
    presets_sub = presets.add_subparsers(dest="presets_command", metavar="ACTION", required=True)
    presets_sub.add_parser("list", help="one line per preset").set_defaults(func=_cmd_presets_list)
    show = presets_sub.add_parser("show", help="print a preset's YAML")
    show.add_argument("name")
    show.set_defaults(func=_cmd_presets_show)

    config = sub.add_parser(
        "config", help="print the effective config, or the verl command it maps to"
    )
    add_config_arguments(config)
    config.add_argument("--format", choices=("yaml", "verl"), default="yaml")
    config.set_defaults(func=_cmd_config)

    train = sub.add_parser("train", help="train on this machine (TRL engine)")
    add_config_arguments(train)
    train.add_argument(
        "--resume", choices=("auto", "disable"), help="auto: continue from the latest checkpoint"
    )
    train.add_argument("--output", help="output directory (trainer.output_dir)")
    train.add_argument("--json", help="also write the result as JSON to this file")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=_cmd_train)

    ev = sub.add_parser("evaluate", help="Pass@1 of a model directory on verl parquet files")
    ev.add_argument("model", help="a Hugging Face model directory")
    ev.add_argument("data", nargs="+", help="verl RL parquet files")
    ev.add_argument("--protocol", choices=("greedy", "sampled"), default="greedy")
    ev.add_argument("-n", type=int, help="samples per problem (sampled; default 16)")
    ev.add_argument("--max-new-tokens", type=int, default=1024)
    ev.add_argument("--limit", type=int, help="evaluate the first N problems only")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument(
        "--backend",
        choices=("auto", "transformers", "vllm"),
        default="auto",
        help="vllm needs a GPU and the [vllm] extra; auto picks it when it can run",
    )
    ev.add_argument("--json", help="also write the result as JSON to this file")
    ev.set_defaults(func=_cmd_evaluate)

    plot = sub.add_parser("plot", help="plot metrics files of either engine (PNG)")
    plot.add_argument("files", nargs="+", help="metrics.jsonl files ({step, data} records)")
    plot.add_argument("-o", "--output", default="plots", help="output folder")
    plot.set_defaults(func=_cmd_plot)

    cmp_ = sub.add_parser(
        "compare", help="GMPO vs GRPO (and GSPO) over seeds, on- and off-policy: report + plots"
    )
    add_config_arguments(cmp_)
    cmp_.add_argument("--losses", default="gmpo,grpo", help="comma-separated, e.g. gmpo,grpo,gspo")
    cmp_.add_argument("--seeds", type=int, default=3, help="seeds per loss (from trainer.seed up)")
    cmp_.add_argument(
        "--iterations",
        type=int,
        default=4,
        help="optimiser passes per rollout batch in the off-policy regime (1: on-policy only)",
    )
    cmp_.add_argument(
        "--output", default="runs/compare", help="study folder (finished runs reused)"
    )
    cmp_.add_argument("--no-progress", action="store_true", help="no progress bars")
    cmp_.set_defaults(func=_cmd_compare)

    comp = sub.add_parser("compile", help="compile the KFP pipeline to its IR YAML")
    comp.add_argument(
        "--preset", help="check that this preset exists (the preset is a run parameter)"
    )
    comp.add_argument("-o", "--output", default="gmpo_training.yaml", help="output file")
    _add_kueue(comp)
    comp.set_defaults(func=_cmd_compile)

    for name, text in (
        ("run", "run the whole pipeline on this machine (kfp.local), no cluster"),
        ("submit", "create a run of the pipeline on a KFP server"),
        ("schedule", "create a KFP recurring run of the pipeline (five-field cron)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--preset", help="training preset (default tiny-cpu)")
        p.add_argument(
            "--set",
            action="append",
            metavar="KEY=VALUE",
            help="training config override, passed to the train step (repeatable)",
        )
        p.add_argument(
            "--param",
            action="append",
            metavar="KEY=VALUE",
            help="pipeline parameter, e.g. threshold=0.5 (repeatable)",
        )
        if name == "run":
            p.add_argument("--local", action="store_true", help="run with kfp.local (required)")
            p.add_argument("--output", default="runs/local", help="registry and run outputs")
            p.add_argument(
                "--runner",
                choices=("subprocess", "docker"),
                default="subprocess",
                help="run the steps in this environment (subprocess) or each in its CPU "
                "image (docker; `gmpo images build --variant cpu` first)",
            )
            p.add_argument(
                "--verbose",
                action="store_true",
                help="show kfp.local's whole output (default: each stage and our own lines; "
                "the rest goes to OUTPUT/run.log)",
            )
            p.set_defaults(func=_cmd_run)
        else:
            p.add_argument("--host", required=True, help="KFP API URL, e.g. http://localhost:8888")
            p.add_argument("--experiment", default="gmpo", help="KFP experiment name")
            _add_kueue(p)
            p.add_argument(
                "--namespace",
                default="",
                help="multi-user KFP: the profile namespace the run goes to (where the "
                "production overlay was applied); standalone KFP: leave out",
            )
        if name == "submit":
            p.add_argument(
                "--source-prefix",
                metavar="URI",
                help="pass the newest object under this s3:// or file:// prefix as source_uri",
            )
            p.add_argument(
                "--wait",
                type=int,
                default=0,
                metavar="SECONDS",
                help="wait for the run to end; exit 2 unless it succeeded",
            )
            p.set_defaults(func=_cmd_submit)
        elif name == "schedule":
            p.add_argument("--cron", required=True, help='five fields, e.g. "0 3 * * *" (03:00)')
            p.add_argument("--name", help="recurring run name (default gmpo-PRESET-schedule)")
            p.set_defaults(func=_cmd_schedule)

    reg = sub.add_parser("registry", help="the model registry: versions and their lineage")
    reg_sub = reg.add_subparsers(dest="registry_command", metavar="{list,show}", required=True)
    for name, text in (
        ("list", "every version of a model: mean Pass@1, aliases, run"),
        ("show", "one version's manifest: results, data, base model, packages, images"),
    ):
        p = reg_sub.add_parser(name, help=text)
        p.add_argument("name", help="the registered model's name, e.g. gmpo-tiny")
        if name == "show":
            p.add_argument(
                "version", nargs="?", default="production", help="a number or an alias (production)"
            )
        p.add_argument(
            "--registry",
            default=settings_registry_uri(),
            help="registry URI: s3://BUCKET/PREFIX, file://PATH or a folder "
            "(a local run's: runs/local/registry)",
        )
        p.add_argument("--json", action="store_true", help="print JSON (show: the whole manifest)")
        p.set_defaults(func=_cmd_registry_list if name == "list" else _cmd_registry_show)

    man = sub.add_parser("manifests", help="write the kustomize manifests (base and overlays)")
    man.add_argument("-o", "--output", default="manifests", help="output folder")
    man.set_defaults(func=_cmd_manifests)

    img = sub.add_parser(
        "images",
        help="print our image references (one source for all), or build them",
        description="`gmpo images [NAME]` prints references; `gmpo images build [NAME...]` "
        "builds and checks images; `gmpo images wheelhouse [NAME...]` only makes the "
        "wheelhouse for an air-gapped build.",
    )
    img.add_argument(
        "name", nargs="?", help="runtime, trainer or eval (print that one), build or wheelhouse"
    )
    img.add_argument("targets", nargs="*", help="with build / wheelhouse: the images (all)")
    img.add_argument("--variant", choices=("cuda", "cpu"), help="image variant (cuda)")
    img.add_argument(
        "--base",
        choices=("registry", "local"),
        help="build: published bases (registry, default) or a Debian base made here "
        "with mmdebstrap (local: nothing is pulled)",
    )
    img.add_argument(
        "--wheelhouse",
        metavar="DIR",
        help="build: make a wheelhouse there with pip, then install from it with no network",
    )
    img.add_argument(
        "--offline",
        action="store_true",
        help="build: install from the wheelhouse already made (--wheelhouse DIR, default "
        "images/wheels), no package index at all",
    )
    img.add_argument(
        "--index",
        metavar="URL",
        help="wheelhouse: extra index for torch (default PyTorch's CPU index; '' for none, "
        "pip's own configuration)",
    )
    img.add_argument("--docker-host", help="engine socket (default $DOCKER_HOST)")
    img.add_argument("--dry-run", action="store_true", help="build: print the commands only")
    img.set_defaults(func=_cmd_images)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"gmpo: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except UserError as exc:  # what we refuse: one line; anything else keeps its traceback
        print(f"gmpo: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

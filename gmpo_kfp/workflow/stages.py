"""The pipeline's four stages as plain functions: each KFP component calls one of them.

Every function takes paths and URIs and returns a dict of what the component
reports (artifact metadata, metrics); none imports kfp, so each is unit-tested on
its own and runs anywhere, down to a laptop CPU.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gmpo_kfp import storage
from gmpo_kfp.cluster.prometheus import push_results
from gmpo_kfp.data.importers import import_source
from gmpo_kfp.data.schema import DataError, write_rl_parquet
from gmpo_kfp.errors import UserError
from gmpo_kfp.workflow.gate import (
    DEFAULT_MARGIN,
    DEFAULT_TOLERANCE,
    Champion,
    Gate,
    decide,
    markdown,
)

SAMPLE_PROMPTS = 3
#: The train stage's metrics name where its seconds went ``seconds/<part>``, one per
#: :data:`gmpo_kfp.engines.training.TIME_PARTS` (shown in the KFP UI and ``gmpo run --local``).
SECONDS_PREFIX = "seconds/"


def _say(message: str) -> None:
    print(f"gmpo: {message}", file=sys.stderr, flush=True)


def parse_levels(levels: str | Sequence[int] | None) -> list[int] | None:
    """``"3,4,5"`` -> [3, 4, 5]; empty -> None."""
    if levels is None or levels == "" or levels == []:
        return None
    if isinstance(levels, str):
        try:
            return [int(x) for x in levels.split(",") if x.strip()]
        except ValueError:
            raise DataError(
                f"levels: {levels!r} is not a comma-separated list of integers"
            ) from None
    return [int(x) for x in levels]


def render_prompt(prompt: Sequence[dict]) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)


def _summary(rows: list[dict]) -> dict[str, Any]:
    sources = sorted({r["data_source"] for r in rows})
    return {
        "rows": len(rows),
        "data_sources": ",".join(sources),
        "sample_prompts": json.dumps([render_prompt(r["prompt"]) for r in rows[:SAMPLE_PROMPTS]]),
    }


# --------------------------------------------------------------------------- prepare


def prepare_data(
    *,
    source: str,
    train_path: str,
    val_path: str,
    source_uri: str = "",
    val_uri: str = "",
    template: str = "",
    levels: str = "",
    limit: int = 0,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Import ``source`` into verl RL parquet: train and validation files, validated.

    ``source_uri`` is a local path or an ``s3://`` URI of the source file (none for
    ``arithmetic``). Validation rows come from ``val_uri`` when given, else a seeded
    ``val_fraction`` of the source (``arithmetic``: its held-out split).
    """
    kwargs = {
        "template": template or None,
        "levels": parse_levels(levels),
        "seed": seed,
    }
    with tempfile.TemporaryDirectory(prefix="gmpo-prepare-") as tmp:
        if source == "arithmetic":
            train_rows = import_source(source, split="train", **kwargs)
            val_rows = import_source(source, split="test", **kwargs)
        else:
            if not source_uri:
                raise DataError(f"source_uri: empty; give the {source} file (a path or s3:// URI)")
            path = storage.fetch_file(source_uri, tmp)
            train_rows = import_source(source, path, split="train", **kwargs)
            if val_uri:
                val_path_local = storage.fetch_file(val_uri, tmp)
                val_rows = import_source(source, val_path_local, split="test", **kwargs)
            else:
                train_rows, val_rows = _split_off(train_rows, val_fraction, seed)
    if limit:
        train_rows = train_rows[:limit]
    write_rl_parquet(train_rows, train_path)
    write_rl_parquet(val_rows, val_path)
    _say(f"prepared {len(train_rows)} training and {len(val_rows)} validation rows of {source}")
    return {"train": _summary(train_rows), "val": _summary(val_rows)}


def _split_off(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    if not 0 < fraction < 1:
        raise DataError(f"val_fraction must be in (0, 1) when no val_uri is given; got {fraction}")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    cut = max(1, round(len(rows) * fraction))
    if cut >= len(rows):
        raise DataError(f"val_fraction {fraction} leaves no training rows out of {len(rows)}")
    val = [rows[i] for i in sorted(order[:cut])]
    train = [rows[i] for i in sorted(order[cut:])]
    for split, part in (("train", train), ("test", val)):
        for row in part:
            row["extra_info"] = {**row["extra_info"], "split": split}
    return train, val


# --------------------------------------------------------------------------- train


class StageError(UserError, RuntimeError):
    """A pipeline step cannot run where it was placed; the message says what to fix."""


def train_work_dir(run_id: str, mount: str | None = None) -> str:
    """The train step's work folder: ``<shared volume>/<run_id>`` where the volume is
    mounted (a retry finds its checkpoints there, a multi-node RayJob's ranks share it),
    else (``kfp.local``, no cluster) a new temporary folder.

    A volume that is mounted but not writable fails here: a temporary folder instead
    would make every retry start over and a multi-node run lose its ranks' shards.
    """
    from gmpo_kfp import settings

    mount = settings.SHARED_MOUNT if mount is None else mount
    if not os.path.isdir(mount):
        return tempfile.mkdtemp(prefix="gmpo-train-")
    if not os.access(mount, os.W_OK | os.X_OK):
        raise StageError(
            f"{mount}: the shared volume ({settings.SHARED_CLAIM}) is mounted but not writable "
            f"by uid {os.getuid()}; give the volume's root to uid {settings.NON_ROOT_UID} "
            "(a storage class that applies fsGroup, or a one-off chown of the volume)"
        )
    work = os.path.join(mount, run_id)
    os.makedirs(work, exist_ok=True)
    return work


def train_config(
    preset: str,
    overrides: Sequence[str],
    *,
    engine: str = "",
    pushgateway: str = "",
    values: dict[str, Any] | None = None,
) -> Any:
    """The train step's effective config: ``preset``, then ``overrides``, then the step's
    own values (a retry resumes: ``trainer.resume=auto``; the pipeline's ``engine`` and
    ``pushgateway`` when set; dotted ``values``). ``gmpo submit`` checks this same config."""
    from gmpo_kfp.config import apply_overrides, with_values
    from gmpo_kfp.presets import load_preset

    step: dict[str, Any] = {"trainer.resume": "auto"}
    if engine:
        step["engine"] = engine
    if pushgateway:
        step["monitoring.pushgateway"] = pushgateway
    step.update(values or {})
    return with_values(apply_overrides(load_preset(preset), list(overrides)), step)


def train_stage(
    *,
    preset: str,
    overrides: Sequence[str],
    train_path: str,
    val_path: str,
    output_uri: str,
    work_dir: str,
    curves_path: str,
    lineage_path: str = "",
    engine: str = "",
    progress: bool = True,
    pushgateway: str = "",
    model_name: str = "",
    kueue_queue: str = "",
    kueue_priority_class: str = "",
) -> dict[str, Any]:
    """Train (checkpoints mirrored to ``output_uri`` and restored from it), upload the model.

    ``model_name``: the name the model is registered under, and the ``model`` label of
    the training series (as evaluation and registration label theirs).
    ``lineage_path``: write the step's lineage there (:mod:`gmpo_kfp.workflow.lineage`).
    ``kueue_queue`` / ``kueue_priority_class``: the pipeline's Kueue queue (``gmpo
    compile --queue``), for a multi-node RayJob to queue where the step's pod did."""
    from gmpo_kfp.engines.training import train
    from gmpo_kfp.study.report import training_markdown

    work = Path(work_dir)
    # the data goes beside the checkpoints: on a multi-node RayJob every pod reads it there
    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    train_copy, val_copy = data_dir / "train.parquet", data_dir / "val.parquet"
    shutil.copyfile(train_path, train_copy)
    shutil.copyfile(val_path, val_copy)
    values: dict[str, Any] = {
        "data.train_files": [str(train_copy)],
        "data.val_files": [str(val_copy)],
        "trainer.output_dir": str(work),
    }
    if model_name:
        values["monitoring.model"] = model_name
    if kueue_queue:
        values["kueue.queue"] = kueue_queue
        values["kueue.priority_class"] = kueue_priority_class or None
    config = train_config(preset, overrides, engine=engine, pushgateway=pushgateway, values=values)
    result = train(config, progress=progress, output_uri=output_uri)
    model_uri = f"{output_uri.rstrip('/')}/model"
    storage.push_dir(result.model_dir, model_uri)
    storage.write_atomic(curves_path, training_markdown(result.metrics_file))
    if lineage_path:
        _write_lineage(lineage_path, _train_lineage(config, work, result))
    metrics: dict[str, float] = {"steps": float(result.steps)}
    if result.pass_at_1_before is not None:
        metrics["pass_at_1_before"] = result.pass_at_1_before
    if result.pass_at_1_after is not None:
        metrics["pass_at_1_after"] = result.pass_at_1_after
    metrics.update({f"{SECONDS_PREFIX}{part}": s for part, s in result.times.items()})
    _say(f"model uploaded to {model_uri}")
    return {
        "model_uri": model_uri,
        "metrics": metrics,
        "config": _config_dict(config),
        "restored_step": result.restored_step,
        "base_model": result.base_model,
    }


def _train_lineage(config: Any, work: Path, result: Any) -> dict[str, Any]:
    from gmpo_kfp.evaluation.models import resolve_model_path
    from gmpo_kfp.workflow.lineage import train_lineage

    _say("recording lineage: hashing the data and the base model")
    found = train_lineage(
        train_files=config.data.train_files,
        val_files=config.data.val_files,
        model_named=config.model.path,
        model_dir=resolve_model_path(config.model.path, work),  # built or fetched already
    )
    if result.sft:
        found["warm_up"] = result.sft
    return found


def _write_lineage(path: str, lineage: dict[str, Any]) -> None:
    storage.write_atomic(path, json.dumps(lineage, indent=2, sort_keys=True) + "\n")


def _config_dict(config: Any) -> dict[str, Any]:
    from gmpo_kfp.config import config_to_dict

    return config_to_dict(config)


# --------------------------------------------------------------------------- evaluate


def evaluate_stage(
    *,
    model_uri: str,
    eval_paths: Sequence[str],
    work_dir: str,
    report_path: str,
    lineage_path: str = "",
    threshold: float = 0.0,
    protocol: str = "greedy",
    n: int = 0,
    max_new_tokens: int = 1024,
    baseline_uri: str = "",
    backend: str = "auto",
    model_name: str = "",
    pushgateway: str = "",
    extra_eval_uris: Sequence[str] = (),
    registry_uri: str = "",
    tolerance: float = DEFAULT_TOLERANCE,
    margin: float = DEFAULT_MARGIN,
) -> dict[str, Any]:
    """Pass@1 per benchmark and their mean; ``passed`` by :func:`~gmpo_kfp.workflow.gate.decide`.

    With ``registry_uri`` and ``model_name``, the registry's ``production`` version of
    that model (the champion, when there is one) is scored beside the new model on the
    same problems with the same protocol; the new one passes only when it reaches
    ``threshold``, is on no benchmark more than ``tolerance`` below the champion and
    beats its mean by ``margin``. The reason is one line in the log, in the report and
    in the lineage (with the champion's version), which registration records.

    ``extra_eval_uris``: further benchmark files (paths or ``s3://``), fetched (checked)
    into ``work_dir`` and evaluated beside ``eval_paths``. With a Pushgateway
    (``pushgateway`` or ``$GMPO_PUSHGATEWAY``), Pass@1 per benchmark and the average go
    there under ``model_name``.
    """
    from gmpo_kfp.evaluation.evaluate import evaluate

    work = Path(work_dir)
    eval_paths = [*eval_paths, *(str(storage.fetch_file(u, work)) for u in extra_eval_uris)]
    model_dir = storage.fetch_dir(model_uri, work / "model")
    kwargs = {
        "protocol": protocol,
        "n": n or None,
        "max_new_tokens": max_new_tokens,
        "backend": backend,
    }
    result = evaluate(model_dir, list(eval_paths), **kwargs)
    baseline = None
    if baseline_uri:
        base_dir = storage.fetch_dir(baseline_uri, work / "baseline")
        baseline = evaluate(base_dir, list(eval_paths), **kwargs)
    gate = Gate(threshold=threshold, tolerance=tolerance, margin=margin)
    champion = None
    if registry_uri and model_name:
        champion = _score_champion(registry_uri, model_name, work, list(eval_paths), kwargs)
    decision = decide(result.pass_at_1, result.mean, gate, champion)
    passed = decision.passed
    if lineage_path:
        from gmpo_kfp.workflow.lineage import eval_lineage

        found = eval_lineage(
            eval_files=eval_paths,
            protocol=result.protocol,
            samples_per_problem=result.samples_per_problem,
        )
        found["gate"] = decision.to_dict()
        _write_lineage(lineage_path, found)
    report = eval_markdown(result, baseline, threshold, passed, decision)
    storage.write_atomic(report_path, report)
    verdict = "passed" if passed else "did not pass"
    _say(f"Pass@1 {result.mean:.4f}: the gate {verdict}: {decision.reason}")
    push_results(
        stage="evaluate",
        model=model_name or Path(model_uri.rstrip("/")).parent.name,
        gateway=pushgateway,
        pass_at_1={**result.pass_at_1, "average": result.mean},
    )
    return {
        "pass_at_1": result.pass_at_1,
        "mean": result.mean,
        "passed": passed,
        "reason": decision.reason,
        "champion_version": decision.champion.version if decision.champion else None,
        "baseline": baseline.pass_at_1 if baseline else None,
    }


def _score_champion(
    registry_uri: str, name: str, work: Path, eval_paths: list[str], kwargs: dict[str, Any]
) -> Any:
    """The registry's production version of ``name``, scored as the new model was; ``None``
    when there is none yet."""
    from gmpo_kfp.evaluation.evaluate import evaluate
    from gmpo_kfp.workflow.registry import DEFAULT_ALIAS, RegistryError, download, resolve

    try:
        manifest = resolve(registry_uri, name, DEFAULT_ALIAS)
    except RegistryError:
        _say(f"no {DEFAULT_ALIAS} version of {name} yet: the floor alone gates")
        return None
    version = int(manifest["version"])
    _say(f"scoring {name} version {version} ({DEFAULT_ALIAS}) on the same problems")
    target = download(registry_uri, name, version, work / "champion")
    scored = evaluate(target, eval_paths, **kwargs)
    return Champion(version=version, pass_at_1=dict(scored.pass_at_1), mean=scored.mean)


def eval_markdown(
    result: Any, baseline: Any, threshold: float, passed: bool, decision: Any = None
) -> str:
    head = "| benchmark | Pass@1 |" + (" baseline |" if baseline else "")
    rule = "|---|---|" + ("---|" if baseline else "")
    lines = [
        "# Evaluation",
        "",
        f"Protocol: {result.protocol}, {result.samples_per_problem} sample(s) per problem.",
        "",
        head,
        rule,
    ]
    for source, value in result.pass_at_1.items():
        extra = f" {baseline.pass_at_1.get(source, float('nan')):.4f} |" if baseline else ""
        lines.append(f"| {source} | {value:.4f} |{extra}")
    extra = f" {baseline.mean:.4f} |" if baseline else ""
    lines.append(f"| **average** | **{result.mean:.4f}** |{extra}")
    verdict = "passed" if passed else "did not pass"
    if decision is not None and decision.champion is not None:
        lines += [
            "",
            "## Against production",
            "",
            *markdown(result.pass_at_1, result.mean, decision),
        ]
    reason = f": {decision.reason}" if decision is not None else f": average >= {threshold}"
    lines += ["", f"Gate **{verdict}**{reason}.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- register


def register_stage(
    *,
    model_uri: str,
    registry_uri: str,
    name: str,
    work_dir: str,
    metrics: dict[str, float] | None = None,
    config: dict[str, Any] | None = None,
    source_run: str = "",
    model_registry_address: str = "",
    pushgateway: str = "",
    lineage_paths: dict[str, str] | None = None,
    weights: str = "merged",
) -> dict[str, Any]:
    """Register the model at ``model_uri`` in the registry; returns version and manifest URI.

    ``weights``: ``merged`` (the whole model folder) or ``adapter`` (a LoRA run's
    adapters alone, with the base model's identity in the manifest).

    With ``model_registry_address``, the version is also recorded in that Kubeflow
    Model Registry, pointing at our registry's copy of the files. ``lineage_paths``: the
    train and evaluate steps' lineage files (``{"train": path, "evaluate": path}``),
    written into the manifest with the run id and the results.
    """
    from gmpo_kfp.workflow.lineage import manifest_lineage
    from gmpo_kfp.workflow.registry import register_in_model_registry, register_model

    model_dir = storage.fetch_dir(model_uri, Path(work_dir) / "model")
    parts = {
        step: json.loads(Path(path).read_text()) if path and Path(path).is_file() else None
        for step, path in (lineage_paths or {}).items()
    }
    lineage = manifest_lineage(
        train=parts.get("train"),
        evaluate=parts.get("evaluate"),
        run_id=source_run or None,
        results=metrics or {},
    )
    gate = (parts.get("evaluate") or {}).get("gate") or {}
    champion = (gate.get("champion") or {}).get("version")
    reg = register_model(
        model_dir,
        registry_uri,
        name,
        metrics=metrics,
        config=config,
        source_run=source_run or None,
        lineage=lineage,
        champion=champion,
        weights=weights,
    )
    beat = f", beating version {champion}" if champion is not None else ""
    held = " (LoRA adapters only)" if weights == "adapter" else ""
    _say(f"registered {name} version {reg.version}{held} at {reg.uri}{beat}")
    push_results(
        stage="register", model=name, gateway=pushgateway, version=reg.version, run_id=source_run
    )
    recorded = None
    if model_registry_address:
        recorded = register_in_model_registry(
            model_registry_address,
            name=name,
            version=reg.version,
            uri=f"{reg.uri}/files",
            metrics=metrics,
            source_run=source_run or None,
        )
        state = "recorded" if recorded else "already had"
        _say(f"Kubeflow Model Registry {model_registry_address} {state} {name} {reg.version}")
    return {
        "version": reg.version,
        "uri": reg.uri,
        "manifest_uri": reg.manifest_uri,
        "created": reg.created,
        "model_registry": recorded,
    }

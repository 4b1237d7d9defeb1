"""Each component's function called directly (python_func), and the pipeline through kfp.local."""

from __future__ import annotations

import json

import pytest
from gmpo_kfp.components.evaluate import evaluate
from gmpo_kfp.components.prepare_data import prepare_data
from gmpo_kfp.components.register_model import register_model
from gmpo_kfp.components.train import train
from kfp import dsl

from gmpo_kfp.data.schema import read_rl_parquet
from gmpo_kfp.engines.training import TIME_PARTS
from gmpo_kfp.metrics import EVAL_MEAN
from gmpo_kfp.storage import open_store
from gmpo_kfp.workflow.kfp_runs import RUN_SUMMARY, run_local
from gmpo_kfp.workflow.registry import aliases, resolve, versions

SHORT = [
    "sft.enabled=false",
    "trainer.total_steps=3",
    "trainer.test_freq=3",
    "trainer.save_freq=2",
    "batch.train_batch_size=8",
    "batch.mini_batch_size=8",
    "batch.micro_batch_size_per_gpu=32",
]


def test_component_functions_chain_without_kfp(tmp_path):
    train_data, val_data = (
        dsl.Dataset(uri=str(tmp_path / "train")),
        dsl.Dataset(uri=str(tmp_path / "val")),
    )
    prepare_data.python_func(
        source="arithmetic", train_data=train_data, val_data=val_data, limit=64
    )
    assert train_data.metadata["rows"] == 64 and val_data.metadata["rows"] == 2000
    assert json.loads(train_data.metadata["sample_prompts"])[0].startswith("user: ")
    assert len(read_rl_parquet(train_data.path)) == 64

    model = dsl.Model(uri=str(tmp_path / "model-artifact"))
    metrics = dsl.Metrics(uri=str(tmp_path / "metrics"))
    curves = dsl.Markdown(uri=str(tmp_path / "curves.md"))
    train_lineage = dsl.Artifact(uri=str(tmp_path / "train-lineage.json"))
    config_json = train.python_func(
        preset="tiny-cpu",
        overrides=SHORT,
        output_root=f"file://{tmp_path / 'runs'}",
        run_id="r1",
        train_data=train_data,
        val_data=val_data,
        model=model,
        metrics=metrics,
        curves=curves,
        lineage=train_lineage,
    )
    assert model.uri == f"file://{tmp_path / 'runs' / 'r1' / 'model'}"
    assert (tmp_path / "runs" / "r1" / "model" / "model.safetensors").is_file()
    assert metrics.metadata["steps"] == 3.0 and "pass_at_1_after" in metrics.metadata
    assert "data:image/png;base64," in (tmp_path / "curves.md").read_text()
    assert json.loads(config_json)["trainer"]["total_steps"] == 3

    eval_metrics = dsl.Metrics(uri=str(tmp_path / "eval-metrics"))
    report = dsl.Markdown(uri=str(tmp_path / "report.md"))
    eval_lineage = dsl.Artifact(uri=str(tmp_path / "eval-lineage.json"))
    passed = evaluate.python_func(
        model=model,
        eval_data=val_data,
        metrics=eval_metrics,
        report=report,
        lineage=eval_lineage,
        threshold=0.0,
        max_new_tokens=4,
    )
    assert passed is True
    assert set(eval_metrics.metadata) == {"pass_at_1/arithmetic", "pass_at_1/average"}
    assert "| **average** |" in (tmp_path / "report.md").read_text()

    registry_uri = f"file://{tmp_path / 'registry'}"
    version, manifest_uri = register_model.python_func(
        model=model,
        eval_metrics=eval_metrics,
        registry_uri=registry_uri,
        name="tiny",
        config_json=config_json,
        train_lineage=train_lineage,
        eval_lineage=eval_lineage,
        source_run="r1",
    )
    assert version == 1 and manifest_uri.endswith("tiny/1/manifest.json")
    manifest = resolve(registry_uri, "tiny")
    assert manifest["metrics"] == eval_metrics.metadata and manifest["source_run"] == "r1"
    assert manifest["config"]["trainer"]["total_steps"] == 3
    check_lineage(manifest["lineage"], tmp_path, eval_metrics.metadata)
    check_registry_commands(registry_uri)


def check_lineage(lineage, tmp_path, results):
    """The manifest says what the model came from, each fact checked at its source."""
    import torch
    import transformers

    from gmpo_kfp.storage import sha256_file
    from gmpo_kfp.workflow.registry import content_sha256, local_files

    assert lineage["run_id"] == "r1" and lineage["results"] == results
    train, evaluate = lineage["train"], lineage["evaluate"]
    (train_file,) = train["data"]["train"]
    assert train_file["rows"] == 64
    assert train_file["sha256"] == sha256_file(tmp_path / "train")  # the prepared data
    (val_file,) = train["data"]["val"]
    assert val_file["sha256"] == sha256_file(tmp_path / "val") and val_file["rows"] == 2000
    base = train["base_model"]
    assert base["named"] == "tiny"
    assert base["weights_sha256"] == content_sha256(local_files(base["resolved"]))
    for part in (train, evaluate):
        assert part["packages"]["torch"] == torch.__version__
        assert part["packages"]["transformers"] == transformers.__version__
        assert part["image"] == {"reference": None, "digest": None}  # no image here
    assert "trl" in train["packages"] and "gmpo-kfp" in train["packages"]
    (bench,) = evaluate["benchmarks"]
    assert bench["sha256"] == val_file["sha256"] and evaluate["protocol"] == "greedy"


def check_registry_commands(registry_uri):
    import contextlib
    import io

    from gmpo_kfp.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["registry", "list", "tiny", "--registry", registry_uri]) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == "tiny: 1 version(s)"
    (row,) = lines[2:]
    assert row.split()[0] == "1" and "production" in row and row.split()[-1] == "r1"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["registry", "show", "tiny", "--registry", registry_uri]) == 0
    shown = out.getvalue()
    assert shown.startswith("tiny version 1 (production)")
    for label in ("train data", "val data", "base model", "train ran", "benchmarks", "run"):
        assert f"  {label} " in shown, label
    assert "no image (a local run)" in shown and "torch " in shown


@pytest.mark.parametrize(("threshold", "registered"), [(0.0, True), (1.01, False)])
def test_whole_pipeline_runs_locally_and_the_gate_decides(tmp_path, threshold, registered):
    result = run_local(tmp_path / "out", overrides=SHORT, params=[f"threshold={threshold}"])
    assert result.pass_at_1 is not None and result.train_metrics["steps"] == 3.0
    assert result.passed is registered
    if registered:
        assert result.registered_version == 1 and result.manifest.is_file()
    else:
        assert result.registered_version is None
        assert not (tmp_path / "out" / "registry").exists()
    assert "wall time" in result.summary()


@pytest.mark.slow
def test_whole_pipeline_on_the_verl_engine_runs_locally(tmp_path):
    """prepare, train on verl (on this CPU), evaluate, the gate, register: through kfp.local."""
    verl = [*SHORT, "trainer.total_steps=2", "trainer.test_freq=2", "optim.lr_schedule=constant"]
    result = run_local(tmp_path / "out", overrides=verl, params=["engine=verl", "threshold=0.0"])
    assert result.train_metrics["steps"] == 2.0 and result.pass_at_1 is not None
    assert result.passed is True and result.registered_version == 1
    runs = tmp_path / "out" / "runs"
    (latest,) = runs.glob("*/checkpoints/latest.json")
    assert json.loads(latest.read_text())["checkpoint"] == "global_step_2"
    manifest = json.loads(result.manifest.read_text())
    assert manifest["config"]["engine"] == "verl"


@pytest.mark.slow
def test_three_scheduled_runs_promote_only_what_beats_production(tmp_path, warm_tiny_models):
    """Through kfp.local against one registry: the first run registers version 1 as
    production; a worse model registers nothing and leaves the alias; a better one
    registers version 2 and moves it. Each run starts from a model of known quality
    (untrained, warmed up less, warmed up more) and barely trains (one step at lr
    1e-9), so the gate sees that quality."""
    from gmpo_kfp.evaluation.models import build_tiny_model

    weak, better = warm_tiny_models
    untrained = build_tiny_model(tmp_path / "untrained")
    registry_uri = f"file://{tmp_path / 'registry'}"
    store = open_store(registry_uri)

    def scheduled(name, model):
        overrides = [*SHORT, f"model.path={model}", "trainer.total_steps=1", "optim.lr=1e-9"]
        params = [f"registry_uri={registry_uri}", "threshold=0.0"]
        return run_local(tmp_path / name, overrides=overrides, params=params)

    first = scheduled("first", weak)
    assert first.passed is True
    assert versions(store, "gmpo-tiny") == [1]
    assert aliases(store, "gmpo-tiny") == {"production": 1}
    worse = scheduled("worse", untrained)
    assert worse.pass_at_1 < first.pass_at_1, (worse.pass_at_1, first.pass_at_1)
    assert worse.passed is False
    assert versions(store, "gmpo-tiny") == [1]
    assert aliases(store, "gmpo-tiny") == {"production": 1}
    best = scheduled("better", better)
    assert best.pass_at_1 > first.pass_at_1 + 0.01, (best.pass_at_1, first.pass_at_1)
    assert best.passed is True
    assert versions(store, "gmpo-tiny") == [1, 2]
    assert aliases(store, "gmpo-tiny") == {"production": 2}
    manifest = json.loads(store.get_bytes("gmpo-tiny/2/manifest.json"))
    assert manifest["champion"] == 1
    assert manifest["metrics"][EVAL_MEAN] == pytest.approx(best.pass_at_1)


def test_the_local_run_reads_like_a_report(tmp_path, capsys, monkeypatch):
    import re

    monkeypatch.setenv("GMPO_PROGRESS_EVERY_S", "0")  # a progress line at every update
    result = run_local(tmp_path / "out", overrides=SHORT, params=["threshold=0.0"])
    console = capsys.readouterr().err
    assert len(result.stage_seconds) == 4, result.stage_seconds
    for stage in result.stage_seconds:
        assert f"gmpo: stage {stage} started" in console
        assert re.search(rf"gmpo: stage {re.escape(stage)} success \(\d+ s\)", console)
    # our own lines come through, progress without a terminal among them
    assert re.search(r"gmpo: tiny-cpu [0-3]/3 \(\d+%\)", console), console
    assert "gmpo: Pass@1 " in console
    # kfp.local's executor JSON and per-task chatter are in the log, not on the console
    log = result.log.read_text()
    assert "Executing task" in log and "Executing task" not in console
    assert all(line.startswith(("gmpo:", "    ")) for line in console.splitlines()), console
    summary = result.summary()
    assert f"log         {result.log}" in summary and "stages      " in summary
    # where the train stage's time went, in the summary and in run-summary.json
    spent = result.train_seconds()
    assert list(spent) == list(TIME_PARTS) and "train time  model_build " in summary
    assert all(v >= 0 for v in spent.values()) and spent["warmup"] == 0  # sft.enabled=false
    assert spent["generation"] > 0 and spent["validation"] > 0 and spent["update"] > 0
    parts = spent["generation"] + spent["validation"] + spent["update"]
    assert parts == pytest.approx(spent["rl"], rel=1e-6)
    saved = json.loads((tmp_path / "out" / RUN_SUMMARY).read_text())
    assert saved["stage_seconds"] == result.stage_seconds and saved["train_seconds"] == spent
    assert saved["registered_version"] == 1 and saved["output"] == str(tmp_path / "out")

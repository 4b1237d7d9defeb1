"""The evaluate stage scores the registry's production version beside the new model."""

from __future__ import annotations

import json

from gmpo_kfp.data.arithmetic import arithmetic_rows
from gmpo_kfp.data.schema import write_rl_parquet
from gmpo_kfp.evaluation.models import TinyModelSpec, build_tiny_model
from gmpo_kfp.workflow import registry
from gmpo_kfp.workflow.stages import evaluate_stage, register_stage


def _evaluate(tmp_path, model, data, registry_uri, tag, **gate):
    out = evaluate_stage(
        model_uri=str(model),
        eval_paths=[str(data)],
        work_dir=str(tmp_path / f"work-{tag}"),
        report_path=str(tmp_path / f"report-{tag}.md"),
        lineage_path=str(tmp_path / f"lineage-{tag}.json"),
        max_new_tokens=4,
        model_name="m",
        registry_uri=registry_uri,
        **gate,
    )
    return out, (tmp_path / f"report-{tag}.md").read_text(), tmp_path / f"lineage-{tag}.json"


def test_the_champion_is_scored_on_the_same_problems_and_gates_registration(tmp_path):
    data = write_rl_parquet(arithmetic_rows("test", limit=24), tmp_path / "val.parquet")
    model = build_tiny_model(tmp_path / "model")
    uri = f"file://{tmp_path / 'registry'}"

    first, report, _ = _evaluate(tmp_path, model, data, uri, "1")
    assert first["passed"] and first["champion_version"] is None
    assert "no production version yet" in first["reason"] and "Against production" not in report
    registry.register_model(model, uri, "m")

    # the same model again: as good as production is not better by the margin
    same, report, lineage = _evaluate(tmp_path, model, data, uri, "2")
    assert not same["passed"] and same["champion_version"] == 1
    assert "does not beat production (version 1)" in same["reason"]
    assert "| benchmark | new model | production (version 1) | difference |" in report
    assert "| arithmetic |" in report and "+0.0000 |" in report
    gate = json.loads(lineage.read_text())["gate"]
    assert gate["champion"]["pass_at_1"] == same["pass_at_1"]  # scored as the new model was

    # with a negative margin the same model passes, and registration records whom it beat
    ok, _, lineage = _evaluate(tmp_path, model, data, uri, "3", margin=-0.5)
    assert ok["passed"] and ok["reason"].startswith("beats production (version 1)")
    other = build_tiny_model(tmp_path / "model-b", TinyModelSpec(seed=1))
    out = register_stage(
        model_uri=str(other),
        registry_uri=uri,
        name="m",
        work_dir=str(tmp_path / "reg"),
        lineage_paths={"evaluate": str(lineage)},
    )
    manifest = registry.resolve(uri, "m")
    assert out["version"] == manifest["version"] == 2 and manifest["champion"] == 1
    assert "  beat " in registry.format_manifest(manifest)

"""Optional registration in a Kubeflow Model Registry, against a loopback REST server."""

from __future__ import annotations

import json

import pytest

from gmpo_kfp.workflow import stages
from gmpo_kfp.workflow.registry import RegistryError, register_in_model_registry
from tests.support.model_registry_server import model_registry_server


def test_register_stage_records_the_version_in_the_model_registry(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"a": 1}))
    registry_uri = f"file://{tmp_path / 'reg'}"
    with model_registry_server() as (url, state):
        out = stages.register_stage(
            model_uri=str(model),
            registry_uri=registry_uri,
            name="tiny",
            work_dir=str(tmp_path / "w"),
            metrics={"pass_at_1/average": 0.75},
            source_run="run-9",
            model_registry_address=url,
        )
        assert out["version"] == 1 and out["model_registry"] is True
        (rm,) = state.models.values()
        (mv,) = state.versions.values()
        (art,) = state.artifacts.values()
        assert rm["name"] == "tiny" and mv["name"] == "1" and mv["registeredModelId"] == rm["id"]
        assert mv["customProperties"]["pass_at_1/average"]["double_value"] == 0.75
        assert art["uri"] == f"{registry_uri}/tiny/1/files"
        assert (art["modelSourceKind"], art["modelSourceClass"], art["modelSourceId"]) == (
            "kfp",
            "pipelinerun",
            "run-9",
        )
        # a retry of the same content: same version, and the Model Registry is not asked twice
        again = stages.register_stage(
            model_uri=str(model),
            registry_uri=registry_uri,
            name="tiny",
            work_dir=str(tmp_path / "w2"),
            model_registry_address=url,
        )
        assert again["version"] == 1 and again["model_registry"] is False
        assert len(state.versions) == 1


def test_an_unreachable_model_registry_is_a_one_line_error():
    with pytest.raises(RegistryError, match=r"model_registry_address http://127.0.0.1:9"):
        register_in_model_registry("http://127.0.0.1:9", name="m", version=1, uri="s3://b/m")

"""KFP component: register the evaluated model (runs only inside the evaluation gate)."""

from typing import NamedTuple

from kfp import dsl

from gmpo_kfp.settings import IMAGES


@dsl.component(install_kfp_package=False, base_image=IMAGES["runtime"])
def register_model(
    model: dsl.Input[dsl.Model],
    eval_metrics: dsl.Input[dsl.Metrics],
    train_lineage: dsl.Input[dsl.Artifact],
    eval_lineage: dsl.Input[dsl.Artifact],
    registry_uri: str,
    name: str,
    config_json: str = "{}",
    source_run: str = "",
    model_registry_address: str = "",
    pushgateway: str = "",
    weights: str = "merged",
) -> NamedTuple("Registration", [("version", int), ("manifest_uri", str)]):
    """Write the model to ``registry_uri/<name>/<version>/``; move the ``production`` alias."""
    import json
    import tempfile
    from collections import namedtuple

    from gmpo_kfp.workflow.stages import register_stage

    out = register_stage(
        model_uri=model.uri,
        registry_uri=registry_uri,
        name=name,
        work_dir=tempfile.mkdtemp(prefix="gmpo-register-"),
        metrics={k: float(v) for k, v in eval_metrics.metadata.items()},
        config=json.loads(config_json),
        lineage_paths={"train": train_lineage.path, "evaluate": eval_lineage.path},
        source_run=source_run,
        model_registry_address=model_registry_address,
        pushgateway=pushgateway,
        weights=weights,
    )
    registration = namedtuple("Registration", ["version", "manifest_uri"])
    return registration(out["version"], out["manifest_uri"])

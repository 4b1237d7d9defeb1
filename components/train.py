"""KFP component: GMPO training; the HF model goes to S3 itself, the Model artifact points there."""

from kfp import dsl

from gmpo_kfp.settings import IMAGES


@dsl.component(install_kfp_package=False, base_image=IMAGES["trainer"])
def train(
    preset: str,
    overrides: list,
    output_root: str,
    run_id: str,
    train_data: dsl.Input[dsl.Dataset],
    val_data: dsl.Input[dsl.Dataset],
    model: dsl.Output[dsl.Model],
    metrics: dsl.Output[dsl.Metrics],
    curves: dsl.Output[dsl.Markdown],
    engine: str = "",
    pushgateway: str = "",
    model_name: str = "",
) -> str:
    """Train with ``preset`` and ``overrides`` into ``output_root/run_id`` (a retry resumes there).

    Returns the effective config as JSON, for the registry's manifest.
    """
    import json
    import os
    import tempfile

    from gmpo_kfp.settings import SHARED_MOUNT
    from gmpo_kfp.stages import train_stage

    # the shared volume (where mounted) holds the work folder: a multi-node RayJob's
    # ranks write their checkpoint shards there, and a retried step finds them
    shared = os.path.isdir(SHARED_MOUNT) and os.access(SHARED_MOUNT, os.W_OK)
    work_dir = (
        os.path.join(SHARED_MOUNT, run_id) if shared else tempfile.mkdtemp(prefix="gmpo-train-")
    )

    out = train_stage(
        preset=preset,
        overrides=[str(o) for o in overrides],
        train_path=train_data.path,
        val_path=val_data.path,
        output_uri=f"{output_root.rstrip('/')}/{run_id}",
        work_dir=work_dir,
        curves_path=curves.path,
        engine=engine,
        pushgateway=pushgateway,
        model_name=model_name,
    )
    model.uri = out["model_uri"]
    model.metadata.update({"preset": preset, "framework": "transformers"})
    for name, value in out["metrics"].items():
        metrics.log_metric(name, value)
    return json.dumps(out["config"])

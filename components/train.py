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
    lineage: dsl.Output[dsl.Artifact],
    engine: str = "",
    pushgateway: str = "",
    model_name: str = "",
    kueue_queue: str = "",
    kueue_priority_class: str = "",
) -> str:
    """Train with ``preset`` and ``overrides`` into ``output_root/run_id`` (a retry resumes there).

    Returns the effective config as JSON, for the registry's manifest.
    """
    import json

    from gmpo_kfp.workflow.stages import train_stage, train_work_dir

    out = train_stage(
        preset=preset,
        overrides=[str(o) for o in overrides],
        train_path=train_data.path,
        val_path=val_data.path,
        output_uri=f"{output_root.rstrip('/')}/{run_id}",
        work_dir=train_work_dir(run_id),
        curves_path=curves.path,
        lineage_path=lineage.path,
        engine=engine,
        pushgateway=pushgateway,
        model_name=model_name,
        kueue_queue=kueue_queue,
        kueue_priority_class=kueue_priority_class,
    )
    model.uri = out["model_uri"]
    model.metadata.update({"preset": preset, "framework": "transformers"})
    for name, value in out["metrics"].items():
        metrics.log_metric(name, value)
    return json.dumps(out["config"])

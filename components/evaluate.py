"""KFP component: Pass@1 per benchmark, a Markdown table, and the gate for registration."""

from kfp import dsl

from gmpo_kfp.settings import IMAGES


@dsl.component(install_kfp_package=False, base_image=IMAGES["eval"])
def evaluate(
    model: dsl.Input[dsl.Model],
    eval_data: dsl.Input[dsl.Dataset],
    metrics: dsl.Output[dsl.Metrics],
    report: dsl.Output[dsl.Markdown],
    lineage: dsl.Output[dsl.Artifact],
    threshold: float = 0.0,
    protocol: str = "greedy",
    n: int = 0,
    max_new_tokens: int = 1024,
    extra_eval_uris: list = [],  # noqa: B006 - KFP takes defaults as literals
    baseline_uri: str = "",
    backend: str = "auto",
    model_name: str = "",
    pushgateway: str = "",
    registry_uri: str = "",
    tolerance: float = 0.02,  # KFP copies the body alone: literals (a test holds them to
    margin: float = 0.01,  # gmpo_kfp.workflow.gate's defaults)
) -> bool:
    """Evaluate ``model`` on ``eval_data`` (and further parquet URIs) beside the registry's
    production version; True when it passes the gate (``gmpo_kfp.workflow.gate``).

    A single boolean output: ``dsl.If`` on it works on a cluster and in ``kfp.local``.
    """
    import tempfile

    from gmpo_kfp.metrics import EVAL_MEAN, eval_metric
    from gmpo_kfp.workflow.stages import evaluate_stage

    out = evaluate_stage(
        model_uri=model.uri,
        eval_paths=[eval_data.path],
        extra_eval_uris=[str(u) for u in extra_eval_uris],
        work_dir=tempfile.mkdtemp(prefix="gmpo-eval-"),
        report_path=report.path,
        lineage_path=lineage.path,
        threshold=threshold,
        protocol=protocol,
        n=n,
        max_new_tokens=max_new_tokens,
        baseline_uri=baseline_uri,
        backend=backend,
        model_name=model_name,
        pushgateway=pushgateway,
        registry_uri=registry_uri,
        tolerance=tolerance,
        margin=margin,
    )
    report.metadata["gate"] = out["reason"]
    if out["champion_version"] is not None:
        report.metadata["champion_version"] = out["champion_version"]
    for source, value in out["pass_at_1"].items():
        metrics.log_metric(eval_metric(source), value)
    metrics.log_metric(EVAL_MEAN, out["mean"])
    return bool(out["passed"])

"""manifests/: from gmpo_kfp.cluster.manifests, rendered by kustomize, valid, least privilege."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from hera.workflows.models import CronWorkflow

from gmpo_kfp import metrics as M
from gmpo_kfp import settings
from gmpo_kfp.cluster import manifests
from gmpo_kfp.config import apply_overrides
from gmpo_kfp.engines import rayjob
from tests.support.kube_api_server import FAILURE, FakeKubeAPI, api_client, serve_kube_api
from tests.support.kueue_schema import SCHEMAS as KUEUE_SCHEMAS
from tests.unit.test_rayjob import build, two_nodes

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
K8S_VERSION = "1.33"
CORE_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "PersistentVolumeClaim"}


def render(overlay: str) -> list[dict]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(MANIFESTS / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_committed_manifests_are_not_stale(tmp_path):
    manifests.write_manifests(tmp_path)
    generated = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*")}
    committed = {
        p.relative_to(MANIFESTS).as_posix()
        for p in MANIFESTS.rglob("*.*")
        if p.read_text().startswith(manifests.HEADER) or p.suffix == ".json"
    }
    assert generated == committed, "run: gmpo manifests -o manifests"
    for rel in generated:
        assert (tmp_path / rel).read_text() == (MANIFESTS / rel).read_text(), rel


@pytest.mark.parametrize("overlay", ["kind", "production"])
def test_overlays_render_and_core_kinds_validate(overlay):
    docs = render(overlay)
    kinds = {d["kind"] for d in docs}
    assert kinds == CORE_KINDS | {"CronWorkflow"}
    namespace = {name: d.namespace for name, d in settings.DEPLOYMENTS.items()}
    for doc in docs:
        assert doc["metadata"]["namespace"] == namespace[overlay]
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "gmpo-kfp"
        if doc["kind"] in CORE_KINDS:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    assert binding["subjects"][0]["namespace"] == namespace[overlay]


@pytest.mark.parametrize("overlay", ["kind", "production"])
def test_cron_workflow_is_a_valid_argo_object_that_loses_nothing(overlay):
    (cron,) = [d for d in render(overlay) if d["kind"] == "CronWorkflow"]
    model = CronWorkflow.model_validate(cron)
    # hera's models drop unknown fields: a round trip that changes nothing has none
    assert model.model_dump(by_alias=True, exclude_none=True) == cron
    spec = cron["spec"]
    assert spec["schedules"] and isinstance(spec["schedules"], list)
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["timezone"] and spec["startingDeadlineSeconds"] > 0
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    assert spec["suspend"] is (overlay == "kind")
    (template,) = spec["workflowSpec"]["templates"]
    container = template["container"]
    assert container["image"] == settings.IMAGES["runtime"]
    assert container["command"][:2] == ["gmpo", "submit"]
    assert "--source-prefix" in container["command"]
    assert spec["workflowSpec"]["serviceAccountName"] == settings.SERVICE_ACCOUNT


def test_cron_workflow_check_catches_an_unknown_field():
    cron = manifests.cron_workflow(settings.DEPLOYMENTS["kind"])
    cron["spec"]["schedule"] = "0 3 * * *"  # Argo 3.5's singular form, gone in Argo 4
    model = CronWorkflow.model_validate(cron)
    assert model.model_dump(by_alias=True, exclude_none=True) != cron


def test_overlays_differ_where_they_should():
    kind = {d["kind"]: d for d in render("kind")}
    prod = {d["kind"]: d for d in render("production")}
    assert kind["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert prod["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]
    providers = yaml.safe_load(kind["ConfigMap"]["data"]["providers"])["s3"]["default"]
    assert providers["endpoint"] == manifests.KIND_S3_ENDPOINT.split("://")[1]
    assert providers["disableSSL"] is True
    assert providers["credentials"]["secretRef"]["secretName"] == settings.S3_SECRET
    assert kind["ConfigMap"]["data"]["defaultPipelineRoot"] == settings.PIPELINE_ROOT


def test_the_kueue_overlay_is_production_plus_a_consistent_valid_queue():
    docs = render(manifests.KUEUE_OVERLAY)
    by_kind = {d["kind"]: d for d in docs}
    assert set(by_kind) == CORE_KINDS | {"CronWorkflow"} | set(KUEUE_SCHEMAS)
    for kind, schema in KUEUE_SCHEMAS.items():
        jsonschema.validate(by_kind[kind], schema)
        assert by_kind[kind]["metadata"]["labels"]["app.kubernetes.io/part-of"] == "gmpo-kfp"
    namespace = settings.DEPLOYMENTS["production"].namespace
    # the namespaced objects are production's; the cluster-scoped ones got no namespace
    for doc in docs:
        if doc["kind"] in CORE_KINDS | {"CronWorkflow", "LocalQueue"}:
            assert doc["metadata"]["namespace"] == namespace, doc["kind"]
        else:
            assert "namespace" not in doc["metadata"], doc["kind"]
    flavor, queue = by_kind["ResourceFlavor"], by_kind["ClusterQueue"]
    local, priority = by_kind["LocalQueue"], by_kind["WorkloadPriorityClass"]
    # the references hold: LocalQueue -> ClusterQueue -> ResourceFlavor
    assert local["spec"]["clusterQueue"] == queue["metadata"]["name"]
    (group,) = queue["spec"]["resourceGroups"]
    assert [f["name"] for f in group["flavors"]] == [flavor["metadata"]["name"]]
    # the flavor is the GPU nodes the pods are placed on, and tolerates their taint
    assert flavor["spec"]["nodeLabels"] == settings.GPU_NODE_SELECTOR
    assert flavor["spec"]["tolerations"] == [settings.GPU_TOLERATION]
    # every resource a train, evaluate or Ray pod requests is covered by the quota
    job = build(apply_overrides(two_nodes(), ["kueue.queue=gmpo"]))
    pod = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    requested = set(pod["containers"][0]["resources"]["requests"])
    assert requested <= set(group["coveredResources"])
    quotas = {r["name"] for r in group["flavors"][0]["resources"]}
    assert quotas == set(group["coveredResources"])
    # the scheduled retrain submits to this queue with this priority, nothing else changed
    cron = by_kind["CronWorkflow"]
    command = cron["spec"]["workflowSpec"]["templates"][0]["container"]["command"]
    at = command.index("--queue")
    assert command[at : at + 4] == [
        "--queue",
        local["metadata"]["name"],
        "--priority-class",
        priority["metadata"]["name"],
    ]
    (plain,) = [d for d in render("production") if d["kind"] == "CronWorkflow"]
    plain_command = plain["spec"]["workflowSpec"]["templates"][0]["container"]["command"]
    assert command[:at] + command[at + 4 :] == plain_command
    cron["spec"]["workflowSpec"]["templates"][0]["container"]["command"] = plain_command
    assert cron == plain
    # and `gmpo submit` takes those flags
    from gmpo_kfp.cli import build_parser

    args = build_parser().parse_args(command[1:])
    assert (args.queue, args.priority_class) == ("gmpo", settings.KUEUE_RETRAIN_PRIORITY)


def test_the_kueue_schemas_refuse_a_misspelt_field():
    queue = manifests.cluster_queue()
    queue["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]["nominalQuotas"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(queue, KUEUE_SCHEMAS["ClusterQueue"])
    local = manifests.local_queue("gmpo")
    local["spec"]["clusterQueue"] = "Not_A_Name"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(local, KUEUE_SCHEMAS["LocalQueue"])


def test_the_secret_template_holds_no_credentials_and_is_not_applied():
    template = yaml.safe_load((MANIFESTS / manifests.SECRET_TEMPLATE).read_text())
    kubernetes_validate.validate(template, K8S_VERSION, strict=True)
    assert template["stringData"]["AWS_ACCESS_KEY_ID"] == ""
    assert template["stringData"]["AWS_SECRET_ACCESS_KEY"] == ""
    base = yaml.safe_load((MANIFESTS / "base" / "kustomization.yaml").read_text())
    assert Path(manifests.SECRET_TEMPLATE).name not in base["resources"]
    for overlay in ("kind", "production"):
        assert not [d for d in render(overlay) if d["kind"] == "Secret"]


def _calls(api: FakeKubeAPI) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of every request the runner made."""
    verbs = {"POST": "create", "DELETE": "delete"}
    seen = set()
    for method, path in api.requests:
        parts = path.strip("/").split("/")
        if parts[0] == "apis":  # /apis/GROUP/VERSION/namespaces/NS/RESOURCE[/NAME]
            group, rest = parts[1], parts[5:]
        else:  # /api/v1/namespaces/NS/RESOURCE[/NAME[/SUB]]
            group, rest = "", parts[4:]
        resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
        verb = verbs.get(method) or ("get" if len(rest) > 1 else "list")
        seen.add((group, resource, verb))
    return seen


def test_rbac_grants_exactly_what_the_code_calls():
    calls: set[tuple[str, str, str]] = set()
    for script, existing in ((None, None), (FAILURE, None), (None, FAILURE[-1])):
        api = FakeKubeAPI(script)
        if existing:
            api.add_job("ns", build(), existing)
        with serve_kube_api(api) as url:
            runner = rayjob.RayJobRunner(api_client(url), "ns", poll_s=0.01, out=io.StringIO())
            with contextlib.suppress(rayjob.RayJobFailed):
                runner.run(build())
        calls |= _calls(api)
    granted = {
        (group, resource, verb)
        for (group, resource), verbs in manifests.RBAC_RULES.items()
        if (group, resource) not in manifests.NOT_OURS
        for verb in verbs
    }
    assert calls == granted
    role = yaml.safe_load((MANIFESTS / "base" / "role.yaml").read_text())
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in role["rules"])


METRIC = re.compile(r"\b(gmpo_[a-z0-9_]+)")


def test_dashboard_uses_only_exported_metrics_and_has_a_datasource_variable():
    board = json.loads((MANIFESTS / "monitoring" / manifests.DASHBOARD_FILE).read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in METRIC.findall(e)}
    assert used <= M.prometheus_names(), used - M.prometheus_names()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert all(p["datasource"]["uid"] == "${datasource}" for p in board["panels"])
    titles = " ".join(p["title"] for p in board["panels"]).lower()
    for topic in ("reward", "pass@1", "clip", "ratio", "entropy", "step time", "gpu"):
        assert topic in titles, topic
    names = {M.PROMETHEUS_GAUGES[k][0] for k in (M.SCORE_MEAN, M.ENTROPY, M.TOKEN_RATIO_MAX)}
    assert names <= used and M.PROM_PASS_AT_1 in used and M.PROM_GPU_MEMORY in used


def test_dashboard_check_catches_an_unknown_metric():
    board = manifests.dashboard()
    board["panels"][0]["targets"][0]["expr"] = "gmpo_reward_avg"
    used = {m for p in board["panels"] for t in p["targets"] for m in METRIC.findall(t["expr"])}
    assert not used <= M.prometheus_names()


def test_prometheus_rule_alerts_on_stall_nan_and_clipping_with_exported_metrics():
    docs = [
        d
        for d in yaml.safe_load_all(
            subprocess.run(
                ["kubectl", "kustomize", str(MANIFESTS / "monitoring")],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        if d
    ]
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"PrometheusRule", "ConfigMap"}
    kubernetes_validate.validate(kinds["ConfigMap"], K8S_VERSION, strict=True)
    assert kinds["ConfigMap"]["metadata"]["labels"]["grafana_dashboard"] == "1"
    rule = kinds["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {"GmpoTrainingStalled", "GmpoNonFiniteLoss", "GmpoClipFractionOutOfRange"}
    for r in alerts.values():
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}
        assert METRIC.findall(r["expr"]) and set(METRIC.findall(r["expr"])) <= M.prometheus_names()
        assert r["labels"]["severity"] in ("warning", "critical")
        assert r["annotations"]["summary"] and r["annotations"]["description"]
    assert M.PROM_ACTIVE in alerts["GmpoTrainingStalled"]["expr"]

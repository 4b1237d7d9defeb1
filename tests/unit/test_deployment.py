"""One deployment model, consistent by construction (``settings.DEPLOYMENTS`` + the overlays).

For each overlay, rendered by kustomize, with the compiled pipeline and the RayJob the
train step creates: the pipeline's pods run in the overlay's namespace (where ``gmpo
submit``, as the CronWorkflow calls it, puts them), as an account that exists there
and holds every verb called there, and each claim, ConfigMap, Secret and account they
name is in that namespace.
"""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import ClassVar

import pytest
import yaml

from gmpo_kfp import settings
from gmpo_kfp.cluster import manifests
from gmpo_kfp.cluster.schedule import schedule
from gmpo_kfp.engines.rayjob import build_rayjob
from gmpo_kfp.engines.verl import verl_command
from gmpo_kfp.workflow.kfp_runs import submit
from tests.unit.test_manifests import MANIFESTS, ROOT, render
from tests.unit.test_rayjob import two_nodes

SECRET = manifests.s3_secret_template()["metadata"]["name"]  # applied by hand, per namespace


class RecordingClient:
    """Stands in for ``kfp.Client`` (no KFP API server runs here): records what a run is
    created with. A real multi-user server would also check the token's account against
    the namespace's RBAC; the overlay's Role is checked for those verbs below."""

    calls: ClassVar[list[dict]] = []

    def __init__(self, host: str, namespace: str = "kubeflow", **_: object):
        self.namespace = namespace

    def create_run_from_pipeline_package(self, package, **kwargs):
        RecordingClient.calls.append({"what": "run", **kwargs})
        return SimpleNamespace(run_id="run-1")

    def create_experiment(self, name, namespace=None):
        RecordingClient.calls.append({"what": "experiment", "namespace": namespace})
        return SimpleNamespace(experiment_id="e1")

    def create_recurring_run(self, **kwargs):
        RecordingClient.calls.append({"what": "recurring", **kwargs})
        return SimpleNamespace(recurring_run_id="rr-1")


@pytest.fixture
def kfp_host(monkeypatch):
    import kfp

    monkeypatch.setattr(kfp, "Client", RecordingClient)
    RecordingClient.calls = []
    with socket.socket() as listener:  # submit's reachability check connects here
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1] if name in command else ""


def pod_references(pod: dict) -> dict[str, set[str]]:
    """What a pod spec names: its account, claims, Secrets and ConfigMaps."""
    refs: dict[str, set[str]] = {"sa": set(), "pvc": set(), "secret": set(), "configmap": set()}
    if "serviceAccountName" in pod:
        refs["sa"].add(pod["serviceAccountName"])
    for volume in pod.get("volumes", []):
        if "persistentVolumeClaim" in volume:
            refs["pvc"].add(volume["persistentVolumeClaim"]["claimName"])
        if "secret" in volume:
            refs["secret"].add(volume["secret"]["secretName"])
        if "configMap" in volume:
            refs["configmap"].add(volume["configMap"]["name"])
    for container in pod.get("containers", []):
        for env in container.get("env", []):
            source = env.get("valueFrom", {})
            if "secretKeyRef" in source:
                refs["secret"].add(source["secretKeyRef"]["name"])
            if "configMapKeyRef" in source:
                refs["configmap"].add(source["configMapKeyRef"]["name"])
    return refs


def granted(docs: list[dict], account: str, namespace: str) -> set[tuple[str, str, str]]:
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Role"}
    verbs = set()
    for binding in (d for d in docs if d["kind"] == "RoleBinding"):
        subjects = {(s["kind"], s["name"], s.get("namespace")) for s in binding["subjects"]}
        if ("ServiceAccount", account, namespace) in subjects:
            for rule in roles[binding["roleRef"]["name"]]["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        verbs |= {(group, resource, v) for v in rule["verbs"]}
    return verbs


@pytest.mark.parametrize("name", list(settings.DEPLOYMENTS))
def test_what_the_pods_reference_is_in_their_namespace_under_an_allowed_account(name, kfp_host):
    deployment = settings.DEPLOYMENTS[name]
    docs = render(name)
    have = {(d["kind"], d["metadata"]["name"]) for d in docs}
    (cron,) = [d for d in docs if d["kind"] == "CronWorkflow"]
    (template,) = cron["spec"]["workflowSpec"]["templates"]
    command = template["container"]["command"]

    # where the pods run: submit as the CronWorkflow calls it
    submit(kfp_host, preset="tiny-cpu", namespace=flag(command, "--namespace"))
    (run,) = [c for c in RecordingClient.calls if c["what"] == "run"]
    runs_in = run["namespace"] or settings.KFP_NAMESPACE  # standalone KFP: its own namespace
    assert runs_in == deployment.namespace
    assert {d["metadata"]["namespace"] for d in docs} == {runs_in}
    account = run["service_account"]
    assert ("ServiceAccount", account) in have

    # the account holds every verb called in that namespace (ours, KFP's, Argo's)
    wanted = {(g, r, v) for (g, r), verbs in manifests.RBAC_RULES.items() for v in verbs}
    assert wanted <= granted(docs, account, runs_in)

    # the compiled pipeline's pods: claims and Secrets there, the launcher's ConfigMap too
    ir = [d for d in yaml.safe_load_all((ROOT / "pipelines" / "gmpo_training.yaml").open()) if d]
    executors = ir[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    claims = {m["constant"] for e in executors.values() for m in e.get("pvcMount", [])}
    secrets = {s["secretName"] for e in executors.values() for s in e.get("secretAsEnv", [])}
    assert (
        claims == {settings.SHARED_CLAIM} and {("PersistentVolumeClaim", c) for c in claims} <= have
    )
    assert secrets == {SECRET}
    (launcher,) = [d for d in docs if d["metadata"]["name"] == manifests.LAUNCHER_CONFIGMAP]
    providers = yaml.safe_load(launcher["data"]["providers"])
    assert providers["s3"]["default"]["credentials"]["secretRef"]["secretName"] == SECRET

    # the RayJob the train step creates in its own namespace, and every pod of it
    config = two_nodes()
    job = build_rayjob(
        config,
        command=verl_command(config),
        name="gmpo-r1",
        namespace=runs_in,
        env={},
    )
    cluster = job["spec"]["rayClusterSpec"]
    pods = [
        job["spec"]["submitterPodTemplate"]["spec"],
        cluster["headGroupSpec"]["template"]["spec"],
    ]
    pods += [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]
    for pod in pods:
        refs = pod_references(pod)
        assert {("ServiceAccount", a) for a in refs["sa"] | {account}} <= have
        assert {("PersistentVolumeClaim", c) for c in refs["pvc"]} <= have
        assert {("ConfigMap", c) for c in refs["configmap"]} <= have
        assert refs["secret"] <= {SECRET}

    # the CronWorkflow runs as the account; on a multi-user KFP with a token it can use
    assert cron["spec"]["workflowSpec"]["serviceAccountName"] == account
    params = {
        p["name"]: p["value"] for p in cron["spec"]["workflowSpec"]["arguments"]["parameters"]
    }
    assert params["kfp_host"] == deployment.kfp_host
    if deployment.multi_user:
        (volume,) = cron["spec"]["workflowSpec"]["volumes"]
        (source,) = volume["projected"]["sources"]
        assert source["serviceAccountToken"]["audience"] == settings.KFP_TOKEN_AUDIENCE
        (mount,) = template["container"]["volumeMounts"]
        env = {e["name"]: e.get("value") for e in template["container"]["env"]}
        assert (
            env[settings.KFP_TOKEN_ENV]
            == f"{mount['mountPath']}/{source['serviceAccountToken']['path']}"
        )
    else:
        assert "volumes" not in cron["spec"]["workflowSpec"]


def test_schedule_runs_as_the_same_account_in_the_same_namespace(kfp_host):
    schedule(kfp_host, "0 3 * * *", namespace="gmpo")
    experiment, recurring = RecordingClient.calls
    assert experiment["namespace"] == "gmpo"
    assert recurring["service_account"] == settings.SERVICE_ACCOUNT


def test_the_manifests_readme_names_each_deployments_namespace():
    text = (MANIFESTS / "README.md").read_text()
    for deployment in settings.DEPLOYMENTS.values():
        assert f"overlays/{deployment.name}" in text and deployment.namespace in text

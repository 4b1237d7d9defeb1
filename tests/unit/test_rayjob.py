"""The RayJob as data: KubeRay's v1 fields, valid pod templates, everything a GPU pod needs."""

from __future__ import annotations

import re
import shlex

import jsonschema
import kubernetes_validate
import pytest

from gmpo_kfp import settings
from gmpo_kfp.config import ConfigError, apply_overrides
from gmpo_kfp.engines import rayjob
from gmpo_kfp.engines.verl import verl_command
from gmpo_kfp.presets import load_preset
from tests.support.kuberay_schema import RAYJOB

K8S_VERSION = "1.33"


def two_nodes(**sets):
    extra = [f"{k}={v}" for k, v in sets.items()]
    base = ["resources.nnodes=3", "resources.gpus_per_node=8", "trainer.output_dir=/mnt/gmpo/r1"]
    return apply_overrides(load_preset("gmpo-qwen2.5-7b-math"), base + extra)


def build(config=None):
    return rayjob.build_rayjob(
        config or two_nodes(),
        command=verl_command(config or two_nodes(), python="python3"),
        name="gmpo-r1-0123456789",
        namespace="kubeflow-user",
        env={"VERL_FILE_LOGGER_PATH": "/mnt/gmpo/r1/metrics.jsonl"},
    )


def test_rayjob_matches_kuberay_v1():
    jsonschema.validate(build(), RAYJOB)


def test_every_pod_template_is_a_valid_core_pod():
    job = build()
    cluster = job["spec"]["rayClusterSpec"]
    templates = [
        cluster["headGroupSpec"]["template"],
        *(g["template"] for g in cluster["workerGroupSpecs"]),
        job["spec"]["submitterPodTemplate"],
    ]
    for template in templates:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, **template}
        pod["metadata"] = {"name": "x", **template.get("metadata", {})}
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_entrypoint_is_the_mapped_verl_command():
    config = two_nodes()
    job = build(config)
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv == verl_command(config, python="python3")
    assert "trainer.nnodes=3" in argv and "trainer.n_gpus_per_node=8" in argv


def test_cluster_shape_and_lifecycle():
    spec = build()["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] == settings.RAYJOB_TTL_S
    assert spec["backoffLimit"] == 0
    workers = spec["rayClusterSpec"]["workerGroupSpecs"]
    assert len(workers) == 1
    assert workers[0]["replicas"] == workers[0]["minReplicas"] == workers[0]["maxReplicas"] == 2
    assert spec["rayClusterSpec"]["rayVersion"] == settings.RAY_VERSION


def test_without_a_queue_the_job_is_neither_suspended_nor_labelled_for_kueue():
    job = build()
    assert job["spec"]["suspend"] is False
    assert not any(k.startswith("kueue.x-k8s.io/") for k in job["metadata"]["labels"])
    assert rayjob.awaiting_admission(job) is None


def test_with_a_queue_kueue_admits_a_suspended_labelled_job_that_shuts_down():
    config = two_nodes(**{"kueue.queue": "team-a", "kueue.priority_class": "research-high"})
    job = build(config)
    jsonschema.validate(job, RAYJOB)
    labels = job["metadata"]["labels"]
    assert labels[settings.KUEUE_QUEUE_LABEL] == "team-a"
    assert labels[settings.KUEUE_PRIORITY_LABEL] == "research-high"
    # Kueue admits a RayJob only created suspended and set to shut its cluster down
    assert job["spec"]["suspend"] is True
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    assert rayjob.awaiting_admission(job) == "team-a"
    job["status"] = {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED"}
    assert rayjob.awaiting_admission(job) is None  # a finished job waits for nothing


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"kueue.queue": "Team_A"}, "kueue.queue must be a Kubernetes name"),
        ({"kueue.queue": "a" * 64}, "kueue.queue must be a Kubernetes name"),
        ({"kueue.priority_class": "high"}, "kueue.priority_class: 'high' needs kueue.queue"),
    ],
)
def test_a_bad_kueue_setting_names_the_field(sets, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        two_nodes(**sets)


def test_every_ray_pod_has_gpus_shm_secret_env_plugin_and_shared_volume():
    cluster = build()["spec"]["rayClusterSpec"]
    for group in (cluster["headGroupSpec"], *cluster["workerGroupSpecs"]):
        assert group["rayStartParams"]["num-gpus"] == "8"
        pod = group["template"]["spec"]
        assert pod["nodeSelector"] == settings.GPU_NODE_SELECTOR
        assert pod["tolerations"] == [settings.GPU_TOLERATION]
        assert pod["serviceAccountName"] == settings.SERVICE_ACCOUNT
        (container,) = pod["containers"]
        assert container["image"] == settings.IMAGES["trainer"]
        assert container["resources"]["limits"][settings.ACCELERATOR] == 8
        assert container["securityContext"]["runAsNonRoot"] is True
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes[settings.SHM_VOLUME]["emptyDir"] == {
            "medium": "Memory",
            "sizeLimit": settings.SHM_SIZE,
        }
        assert volumes["shared"]["persistentVolumeClaim"]["claimName"] == settings.SHARED_CLAIM
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/dev/shm", settings.SHARED_MOUNT} <= mounts
        env = {e["name"]: e for e in container["env"]}
        assert env["VERL_USE_EXTERNAL_MODULES"]["value"] == settings.VERL_PLUGIN_MODULE
        assert env["VERL_FILE_LOGGER_PATH"]["value"] == "/mnt/gmpo/r1/metrics.jsonl"
        for var, key in settings.S3_SECRET_ENV.items():
            ref = env[var]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == settings.S3_SECRET and ref["key"] == key
            assert "value" not in env[var]  # secrets enter only by reference


@pytest.mark.parametrize(
    ("sets", "field"),
    [
        ({"resources.nnodes": 1}, "resources.nnodes"),
        ({"resources.gpus_per_node": 0}, "resources.gpus_per_node"),
    ],
)
def test_bad_shapes_name_the_field(sets, field):
    with pytest.raises(ConfigError, match=re.escape(field)):
        build(two_nodes(**sets))


def test_names_are_stable_short_and_dns_safe():
    a = rayjob.rayjob_name("/mnt/gmpo/Run_ID-with.Many.Dots" + "x" * 80)
    assert a == rayjob.rayjob_name("/mnt/gmpo/Run_ID-with.Many.Dots" + "x" * 80)
    assert len(a) <= rayjob.MAX_NAME
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", a)
    assert a != rayjob.rayjob_name("/mnt/gmpo/other")
    with pytest.raises(ConfigError, match="RayJob name"):
        rayjob.build_rayjob(two_nodes(), command=["true"], name="Bad_Name", namespace="ns")


def test_the_validators_refuse_a_misspelt_field():
    job = build()
    job["spec"]["shutdownAfterJobFinish"] = True
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(job, RAYJOB)
    template = build()["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]
    template["spec"]["containers"][0]["imagee"] = "x"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": template["spec"]}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)

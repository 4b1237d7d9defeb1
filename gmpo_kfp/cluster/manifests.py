"""The cluster manifests under ``manifests/`` as data: one function per object, no templates.

``gmpo manifests -o manifests`` writes them (a test fails when the committed files
are stale), so every name, image and label comes from :mod:`gmpo_kfp.settings`:

- ``base/``: the pipeline runs' ServiceAccount, a least-privilege Role and its
  RoleBinding (exactly the API calls our code and Argo's executor make: see
  :data:`RBAC_RULES`), the ``kfp-launcher`` ConfigMap (S3 provider for KFP's
  artifacts), the shared
  work volume's claim; beside them, not applied, ``s3-secret.template.yaml``: the S3
  credentials Secret with empty values, to fill and apply by hand in the
  deployment's namespace (applying it with the rest would wipe the real keys).
- ``overlays/<name>``: one per :data:`gmpo_kfp.settings.DEPLOYMENTS`, everything in
  the namespace where that deployment's pipeline pods run, with its ``gmpo-retrain``
  Argo CronWorkflow:
  - ``kind``: standalone KFP (namespace ``kubeflow``), the cluster's own S3 store
    (``minio-service``, which standalone KFP keeps for MinIO and SeaweedFS alike), a
    small ReadWriteOnce volume, the CronWorkflow suspended (the smoke test submits by
    hand);
  - ``production``: a multi-user Kubeflow's profile namespace ``gmpo``, a large
    ReadWriteMany volume, the CronWorkflow submitting there with a projected token.
- ``overlays/production-kueue``: optional, ``production`` queued by Kueue: a
  ResourceFlavor for the GPU nodes, a ClusterQueue with their quota, the LocalQueue
  in the profile namespace, a WorkloadPriorityClass for the scheduled retrain, and the
  CronWorkflow submitting with ``--queue`` and ``--priority-class`` (the train and
  evaluate pods and a multi-node RayJob then wait for Kueue's admission).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from gmpo_kfp import settings
from gmpo_kfp.config import KueueConfig

PART_OF = {"app.kubernetes.io/part-of": "gmpo-kfp"}
CRON_NAME = "gmpo-retrain"
LAUNCHER_CONFIGMAP = "kfp-launcher"  # the name KFP's launcher reads in the run's namespace

#: (apiGroup, resource) -> verbs: every call made as the pipeline runner account in
#: its namespace. Ours: the RayJob runner (engines/rayjob.py). The rest: see NOT_OURS.
RBAC_RULES: dict[tuple[str, str], tuple[str, ...]] = {
    ("ray.io", "rayjobs"): ("create", "delete", "get"),
    ("", "pods"): ("list",),
    ("", "pods/log"): ("get",),
    ("argoproj.io", "workflowtaskresults"): ("create", "patch"),
    ("", "configmaps"): ("get",),
    ("", "secrets"): ("get",),
    ("pipelines.kubeflow.org", "experiments"): ("create", "get", "list"),
    ("pipelines.kubeflow.org", "runs"): ("create", "get"),
}
#: rules for calls our code does not make itself, and who makes them
NOT_OURS = {
    # Argo's executor in every workflow pod reports outputs as WorkflowTaskResults
    ("argoproj.io", "workflowtaskresults"): "Argo's executor",
    # KFP's driver and launcher read the kfp-launcher ConfigMap and the S3 Secret it names
    ("", "configmaps"): "KFP's launcher",
    ("", "secrets"): "KFP's launcher",
    # the CronWorkflow's `gmpo submit` (kfp.Client) on a multi-user KFP, which checks
    # these verbs of the token's account in the profile namespace
    ("pipelines.kubeflow.org", "experiments"): "KFP's API (multi-user)",
    ("pipelines.kubeflow.org", "runs"): "KFP's API (multi-user)",
}

#: kind overlay: KFP standalone's in-cluster S3 service and the secret it keeps the keys in
KIND_S3_ENDPOINT = "http://minio-service.kubeflow:9000"


def _meta(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "labels": dict(PART_OF), **extra}


def s3_secret_env() -> list[dict[str, Any]]:
    """The S3 credentials as container env, each by reference to the Secret (never a value)."""
    return [
        {
            "name": var,
            "valueFrom": {
                "secretKeyRef": {"name": settings.S3_SECRET, "key": key, "optional": True}
            },
        }
        for var, key in settings.S3_SECRET_ENV.items()
    ]


def service_account() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(settings.SERVICE_ACCOUNT),
    }


def role() -> dict[str, Any]:
    rules = [
        {"apiGroups": [group], "resources": [resource], "verbs": list(verbs)}
        for (group, resource), verbs in RBAC_RULES.items()
    ]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(settings.SERVICE_ACCOUNT),
        "rules": rules,
    }


def role_binding() -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(settings.SERVICE_ACCOUNT),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": settings.SERVICE_ACCOUNT,
        },
        "subjects": [{"kind": "ServiceAccount", "name": settings.SERVICE_ACCOUNT}],
    }


def launcher_providers(endpoint: str, *, disable_ssl: bool) -> dict[str, Any]:
    """KFP launcher's ``providers`` value: S3 with the keys from our Secret."""
    host = endpoint.split("://", 1)[-1]
    return {
        "s3": {
            "default": {
                "endpoint": host,
                "disableSSL": disable_ssl,
                "region": "us-east-1",
                "forcePathStyle": True,
                "credentials": {
                    "fromEnv": False,
                    "secretRef": {
                        "secretName": settings.S3_SECRET,
                        "accessKeyKey": "AWS_ACCESS_KEY_ID",
                        "secretKeyKey": "AWS_SECRET_ACCESS_KEY",
                    },
                },
            }
        }
    }


def launcher_configmap(endpoint: str = "s3.amazonaws.com", *, disable_ssl: bool = False) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(LAUNCHER_CONFIGMAP),
        "data": {
            "defaultPipelineRoot": settings.PIPELINE_ROOT,
            "providers": yaml.safe_dump(
                launcher_providers(endpoint, disable_ssl=disable_ssl), sort_keys=False
            ),
        },
    }


def s3_secret_template(endpoint: str = "") -> dict[str, Any]:
    """The S3 credentials Secret with empty values: fill it in the cluster, never in git."""
    data = dict.fromkeys(settings.S3_SECRET_ENV.values(), "")
    data["AWS_ENDPOINT_URL"] = endpoint
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(
            settings.S3_SECRET,
            annotations={"gmpo-kfp/template": "fill in the values, then kubectl apply -f"},
        ),
        "type": "Opaque",
        "stringData": data,
    }


def shared_claim(size: str = "1Ti", mode: str = "ReadWriteMany") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(settings.SHARED_CLAIM),
        "spec": {"accessModes": [mode], "resources": {"requests": {"storage": size}}},
    }


TOKEN_VOLUME = "kfp-token"


def cron_workflow(
    deployment: settings.Deployment,
    *,
    schedule: str = "0 3 * * 1",
    timezone: str = "UTC",
    preset: str = "gmpo-qwen2.5-7b-math",
    suspend: bool = False,
    kueue: KueueConfig | None = None,
) -> dict[str, Any]:
    """Argo CronWorkflow ``gmpo-retrain``: submits the pipeline to KFP with the newest data.

    The newest data: the last object under ``data_prefix`` in key order (date-stamped
    names), resolved by ``gmpo submit --source-prefix`` when the workflow runs. On a
    multi-user KFP it submits to the deployment's namespace with a projected token of
    its service account (audience ``pipelines.kubeflow.org``), which ``kfp.Client``
    reads from ``$KF_PIPELINES_SA_TOKEN_PATH``. With ``kueue``, the runs it submits
    queue there (:func:`kueue_flags`).
    """
    params = {
        "kfp_host": deployment.kfp_host,
        "preset": preset,
        "source": "gsm8k",
        "data_prefix": settings.SCHEDULED_DATA_PREFIX,
    }
    command = [
        "gmpo",
        "submit",
        "--host",
        "{{workflow.parameters.kfp_host}}",
        "--preset",
        "{{workflow.parameters.preset}}",
        "--param",
        "source={{workflow.parameters.source}}",
        "--source-prefix",
        "{{workflow.parameters.data_prefix}}",
        "--experiment",
        CRON_NAME,
        *kueue_flags(kueue),
    ]
    container: dict[str, Any] = {
        "image": settings.IMAGES["runtime"],
        "command": command,
        "env": s3_secret_env(),
        "resources": {
            "requests": {
                "cpu": settings.CPU_RESOURCES["cpu"],
                "memory": settings.CPU_RESOURCES["memory"],
            }
        },
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    workflow: dict[str, Any] = {
        "entrypoint": "submit",
        "serviceAccountName": settings.SERVICE_ACCOUNT,
        "arguments": {"parameters": [{"name": k, "value": v} for k, v in params.items()]},
        "securityContext": {"runAsNonRoot": True, "runAsUser": settings.NON_ROOT_UID},
        "templates": [
            {
                "name": "submit",
                "retryStrategy": {"limit": "2", "retryPolicy": "OnError"},
                "container": container,
            }
        ],
    }
    if deployment.multi_user:
        command += ["--namespace", deployment.namespace]
        container["env"] = [
            *container["env"],
            {"name": settings.KFP_TOKEN_ENV, "value": f"{settings.KFP_TOKEN_DIR}/token"},
        ]
        container["volumeMounts"] = [
            {"name": TOKEN_VOLUME, "mountPath": settings.KFP_TOKEN_DIR, "readOnly": True}
        ]
        token = {
            "path": "token",
            "expirationSeconds": 7200,
            "audience": settings.KFP_TOKEN_AUDIENCE,
        }
        workflow["volumes"] = [
            {"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": token}]}}
        ]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": _meta(CRON_NAME),
        "spec": {
            "schedules": [schedule],
            "timezone": timezone,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "suspend": suspend,
            "workflowSpec": workflow,
        },
    }


def kueue_flags(kueue: KueueConfig | None) -> list[str]:
    """``gmpo submit``'s flags for ``kueue``; none without a queue."""
    if kueue is None or not kueue.queue:
        return []
    flags = ["--queue", kueue.queue]
    return flags + (["--priority-class", kueue.priority_class] if kueue.priority_class else [])


# --------------------------------------------------------------------------- Kueue

KUEUE_API = "kueue.x-k8s.io/v1beta1"  # served by every Kueue release since 0.5
KUEUE_OVERLAY = "production-kueue"
#: the scheduled retrain's queue: the LocalQueue and the WorkloadPriorityClass below
RETRAIN_KUEUE = KueueConfig(
    queue=settings.KUEUE_LOCAL_QUEUE, priority_class=settings.KUEUE_RETRAIN_PRIORITY
)


def resource_flavor() -> dict[str, Any]:
    """The GPU nodes as a Kueue ResourceFlavor: their label and taint, which admitted
    pods are then steered to (and tolerate)."""
    return {
        "apiVersion": KUEUE_API,
        "kind": "ResourceFlavor",
        "metadata": _meta(settings.KUEUE_FLAVOR),
        "spec": {
            "nodeLabels": dict(settings.GPU_NODE_SELECTOR),
            "tolerations": [dict(settings.GPU_TOLERATION)],
        },
    }


def cluster_queue() -> dict[str, Any]:
    """The quota the runs share: the GPU flavor's CPUs, memory and GPUs; lower priority
    work is preempted for higher within the queue."""
    quota = settings.KUEUE_QUOTA
    return {
        "apiVersion": KUEUE_API,
        "kind": "ClusterQueue",
        "metadata": _meta(settings.KUEUE_CLUSTER_QUEUE),
        "spec": {
            "namespaceSelector": {},
            "queueingStrategy": "BestEffortFIFO",
            "preemption": {"withinClusterQueue": "LowerPriority"},
            "resourceGroups": [
                {
                    "coveredResources": list(quota),
                    "flavors": [
                        {
                            "name": settings.KUEUE_FLAVOR,
                            "resources": [
                                {"name": name, "nominalQuota": value}
                                for name, value in quota.items()
                            ],
                        }
                    ],
                }
            ],
        },
    }


def local_queue(namespace: str) -> dict[str, Any]:
    """The queue runs in ``namespace`` name (``--queue``), backed by the ClusterQueue."""
    return {
        "apiVersion": KUEUE_API,
        "kind": "LocalQueue",
        "metadata": _meta(settings.KUEUE_LOCAL_QUEUE, namespace=namespace),
        "spec": {"clusterQueue": settings.KUEUE_CLUSTER_QUEUE},
    }


def retrain_priority() -> dict[str, Any]:
    """The scheduled retrain's priority class (``--priority-class``)."""
    return {
        "apiVersion": KUEUE_API,
        "kind": "WorkloadPriorityClass",
        "metadata": _meta(settings.KUEUE_RETRAIN_PRIORITY),
        "value": settings.KUEUE_RETRAIN_PRIORITY_VALUE,
        "description": "gmpo-kfp's scheduled retraining; interactive runs may outrank it",
    }


def kueue_overlay_files() -> dict[str, dict[str, Any]]:
    """``overlays/production-kueue/``: the production overlay, its queue and quota, and
    the CronWorkflow submitting to that queue."""
    production = settings.DEPLOYMENTS["production"]
    objects = {
        "resourceflavor.yaml": resource_flavor(),
        "clusterqueue.yaml": cluster_queue(),
        "localqueue.yaml": local_queue(production.namespace),
        "priorityclass.yaml": retrain_priority(),
    }
    # the CronWorkflow's containers are a list, which a strategic merge replaces whole
    cron = cron_workflow(production, kueue=RETRAIN_KUEUE)
    patch = _patch(cron, spec={"workflowSpec": cron["spec"]["workflowSpec"]})
    return {
        **objects,
        "patch-cronworkflow.yaml": patch,
        "kustomization.yaml": {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": ["../production", *objects],
            "patches": [{"path": "patch-cronworkflow.yaml"}],
        },
    }


SECRET_TEMPLATE = "base/s3-secret.template.yaml"
BASE_FILES = {
    "serviceaccount.yaml": service_account,
    "role.yaml": role,
    "rolebinding.yaml": role_binding,
    "kfp-launcher.yaml": launcher_configmap,
    "shared-pvc.yaml": shared_claim,
}
CRON_FILE = "cronworkflow.yaml"


def _patch(obj: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A strategic-merge patch: the object's identity plus ``fields``."""
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": obj["metadata"]["name"]},
        **fields,
    }


def overlay_files(deployment: settings.Deployment) -> dict[str, dict[str, Any]]:
    """``overlays/<name>/``: the base in the deployment's namespace, its patches, and its
    CronWorkflow (which differs by how it reaches KFP)."""
    if deployment.name == "kind":
        patches = {
            "patch-pvc.yaml": _patch(
                shared_claim(),
                spec={
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "5Gi"}},
                },
            ),
            "patch-launcher.yaml": _patch(
                launcher_configmap(),
                data=launcher_configmap(KIND_S3_ENDPOINT, disable_ssl=True)["data"],
            ),
        }
        cron = cron_workflow(deployment, suspend=True)  # the smoke test submits by hand
    else:
        patches = {
            "patch-pvc.yaml": _patch(
                shared_claim(), spec={"resources": {"requests": {"storage": "2Ti"}}}
            ),
        }
        cron = cron_workflow(deployment)
    files = dict(patches)
    files[CRON_FILE] = cron
    files["kustomization.yaml"] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": deployment.namespace,
        "resources": ["../../base", CRON_FILE],
        "patches": [{"path": name} for name in patches],
    }
    return files


def kustomizations() -> dict[str, dict[str, Any]]:
    """Every file of ``manifests/``: relative path -> object."""
    files: dict[str, dict[str, Any]] = {f"base/{n}": fn() for n, fn in BASE_FILES.items()}
    # not a resource of the kustomization: applying empty values would wipe the real ones
    files[SECRET_TEMPLATE] = s3_secret_template()
    files["base/kustomization.yaml"] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(BASE_FILES),
    }
    for name, deployment in settings.DEPLOYMENTS.items():
        for rel, obj in overlay_files(deployment).items():
            files[f"overlays/{name}/{rel}"] = obj
    for rel, obj in kueue_overlay_files().items():
        files[f"overlays/{KUEUE_OVERLAY}/{rel}"] = obj
    return files


HEADER = (
    "# Generated by `gmpo manifests -o manifests` from gmpo_kfp/cluster/manifests.py: edit there.\n"
)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the launcher's ``providers``) as readable ``|`` blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(obj: Mapping[str, Any]) -> str:
    return HEADER + yaml.dump(dict(obj), Dumper=_Dumper, sort_keys=False)


def write_manifests(root: str | Path) -> list[Path]:
    """Write every file under ``root`` (atomically each); drop generated files no longer made."""
    import json

    from gmpo_kfp.storage import write_atomic

    root = Path(root)
    files = kustomizations() | monitoring_files()
    written = [write_atomic(root / rel, render(obj)) for rel, obj in files.items()]
    board = json.dumps(dashboard(), indent=2) + "\n"
    written.append(write_atomic(root / MONITORING_DIR / DASHBOARD_FILE, board))
    for stale in root.rglob("*.yaml"):
        rel = stale.relative_to(root).as_posix()
        if rel not in files and stale.read_text().startswith(HEADER):
            stale.unlink()
    return written


# --------------------------------------------------------------------------- monitoring

#: alert thresholds (PrometheusRule)
STALL_SECONDS = 1800
CLIPFRAC_MAX = 0.2
MONITORING_DIR = "monitoring"
DASHBOARD_FILE = "gmpo-dashboard.json"


def _panel(title: str, exprs: dict[str, str], y: int, x: int, unit: str = "none") -> dict:
    return {
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "expr": expr,
                "legendFormat": legend,
            }
            for i, (legend, expr) in enumerate(exprs.items())
        ],
    }


def dashboard() -> dict[str, Any]:
    """Grafana dashboard: reward, Pass@1 per registered version, clipping, ratio range,
    entropy, step time and GPU memory; datasource and model variables."""
    from gmpo_kfp import metrics as M

    g = {key: name for key, (name, _) in M.PROMETHEUS_GAUGES.items()}
    sel = '{model=~"$model"}'
    panels = [
        ("reward", {"{{model}}": f"{g[M.SCORE_MEAN]}{sel}"}, "none"),
        (
            "Pass@1 per registered version",
            {
                "{{model}} {{benchmark}}": f'{M.PROM_PASS_AT_1}{{model=~"$model"}}',
                "{{model}} registered version": f"{M.PROM_REGISTERED_VERSION}{sel}",
            },
            "none",
        ),
        (
            "clip fraction",
            {
                "{{model}} upper": f"{g[M.PG_CLIPFRAC]}{sel}",
                "{{model}} lower": f"{g[M.PG_CLIPFRAC_LOWER]}{sel}",
            },
            "percentunit",
        ),
        (
            "importance ratio range (token and sequence)",
            {
                "{{model}} token max": f"{g[M.TOKEN_RATIO_MAX]}{sel}",
                "{{model}} token min": f"{g[M.TOKEN_RATIO_MIN]}{sel}",
                "{{model}} seq max": f"{g[M.SEQ_RATIO_MAX]}{sel}",
                "{{model}} seq min": f"{g[M.SEQ_RATIO_MIN]}{sel}",
            },
            "none",
        ),
        ("entropy", {"{{model}}": f"{g[M.ENTROPY]}{sel}"}, "none"),
        (
            "step time and throughput",
            {
                "{{model}} s/step": f"{g[M.TIME_PER_STEP]}{sel}",
                "{{model}} tokens/s": f"{g[M.THROUGHPUT]}{sel}",
            },
            "s",
        ),
        ("GPU memory (peak, per process)", {"{{model}}": f"{M.PROM_GPU_MEMORY}{sel}"}, "bytes"),
        (
            "training progress",
            {
                "{{model}} step": f"{M.PROM_STEP}{sel}",
                "{{model}} non-finite losses": f"{M.PROM_NONFINITE}{sel}",
            },
            "none",
        ),
    ]
    return {
        "title": "GMPO training",
        "uid": settings.PIPELINE_NAME,
        "tags": ["gmpo-kfp"],
        "schemaVersion": 39,
        "time": {"from": "now-24h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                {
                    "name": "model",
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": f"label_values({M.PROM_STEP}, model)",
                    "includeAll": True,
                    "multi": True,
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },
        "panels": [
            _panel(title, exprs, y=8 * (i // 2), x=12 * (i % 2), unit=unit)
            for i, (title, exprs, unit) in enumerate(panels)
        ],
    }


def prometheus_rule() -> dict[str, Any]:
    """Alerts: training stalled, a non-finite loss, clip fraction out of range."""
    from gmpo_kfp import metrics as M

    clip = M.PROMETHEUS_GAUGES[M.PG_CLIPFRAC][0]
    clip_lower = M.PROMETHEUS_GAUGES[M.PG_CLIPFRAC_LOWER][0]
    rules = [
        {
            "alert": "GmpoTrainingStalled",
            "expr": f"{M.PROM_ACTIVE} == 1 and time() - {M.PROM_LAST_STEP_TIME} > {STALL_SECONDS}",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "GMPO training {{ $labels.model }} made no step for 30 minutes",
                "description": "Check the train step's pod (preempted? stuck in NCCL?); a "
                "retry resumes from the last checkpoint.",
            },
        },
        {
            "alert": "GmpoNonFiniteLoss",
            "expr": f"increase({M.PROM_NONFINITE}[15m]) > 0",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "GMPO training {{ $labels.model }} logged a NaN or infinite loss",
                "description": "Lower optim.lr or the clip ratios, and resume from the last "
                "good checkpoint.",
            },
        },
        {
            "alert": "GmpoClipFractionOutOfRange",
            "expr": f"{clip} > {CLIPFRAC_MAX} or {clip_lower} > {CLIPFRAC_MAX}",
            "for": "15m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "GMPO training {{ $labels.model }} clips more than 20% of tokens",
                "description": "The policy moves too far per batch: fewer PPO epochs, a "
                "lower learning rate, or (MoE) a clip of 0.2.",
            },
        },
    ]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _meta(settings.PIPELINE_NAME),
        "spec": {"groups": [{"name": settings.PIPELINE_NAME, "rules": rules}]},
    }


def monitoring_files() -> dict[str, Any]:
    """``manifests/monitoring/``: the PrometheusRule and the dashboard as a Grafana
    sidecar ConfigMap (label ``grafana_dashboard``), applied on their own."""
    return {
        f"{MONITORING_DIR}/prometheusrule.yaml": prometheus_rule(),
        f"{MONITORING_DIR}/kustomization.yaml": {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": ["prometheusrule.yaml"],
            "configMapGenerator": [
                {
                    "name": "gmpo-dashboard",
                    "files": [DASHBOARD_FILE],
                    "options": {
                        "labels": {"grafana_dashboard": "1", **PART_OF},
                        "disableNameSuffixHash": True,
                    },
                }
            ],
        },
    }

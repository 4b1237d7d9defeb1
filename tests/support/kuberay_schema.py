"""KubeRay's RayJob ``ray.io/v1`` API as a JSON Schema: the fields we set and their neighbours.

Written from KubeRay's v1 Go types (``rayjob_types.go``, ``raycluster_types.go``):
names and JSON types as the generated CRD has them; ``required`` where the Go field
has no ``omitempty``; unknown names refused (``additionalProperties: false``) so a
misspelt field fails here rather than being pruned by the API server. Pod templates
are left open here and validated separately as core ``Pod`` objects.
"""

INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
POD_TEMPLATE = {
    "type": "object",
    "properties": {"metadata": {"type": "object"}, "spec": {"type": "object"}},
}

HEAD_GROUP = {
    "type": "object",
    "additionalProperties": False,
    "required": ["rayStartParams", "template"],
    "properties": {
        "serviceType": {"type": "string"},
        "headService": {"type": "object"},
        "enableIngress": {"type": "boolean"},
        "rayStartParams": STR_MAP,
        "template": POD_TEMPLATE,
    },
}
WORKER_GROUP = {
    "type": "object",
    "additionalProperties": False,
    "required": ["groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"],
    "properties": {
        "groupName": {"type": "string"},
        "replicas": INT32,
        "minReplicas": INT32,
        "maxReplicas": INT32,
        "numOfHosts": INT32,
        "rayStartParams": STR_MAP,
        "template": POD_TEMPLATE,
        "scaleStrategy": {"type": "object"},
    },
}
CLUSTER_SPEC = {
    "type": "object",
    "additionalProperties": False,
    "required": ["headGroupSpec"],
    "properties": {
        "headGroupSpec": HEAD_GROUP,
        "workerGroupSpecs": {"type": "array", "items": WORKER_GROUP},
        "rayVersion": {"type": "string"},
        "enableInTreeAutoscaling": {"type": "boolean"},
        "autoscalerOptions": {"type": "object"},
        "headServiceAnnotations": STR_MAP,
        "suspend": {"type": "boolean"},
    },
}
RAYJOB = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayJob"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}},
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "activeDeadlineSeconds": INT32,
                "backoffLimit": INT32,
                "rayClusterSpec": CLUSTER_SPEC,
                "submitterPodTemplate": POD_TEMPLATE,
                "metadata": STR_MAP,
                "clusterSelector": STR_MAP,
                "submitterConfig": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"backoffLimit": INT32},
                },
                "managedBy": {"enum": ["ray.io/kuberay-operator", "kueue.x-k8s.io/multikueue"]},
                "deletionStrategy": {"type": "object"},
                "entrypoint": {"type": "string"},
                "runtimeEnvYAML": {"type": "string"},
                "jobId": {"type": "string"},
                "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode"]},
                "entrypointResources": {"type": "string"},
                "entrypointNumCpus": {"type": "number"},
                "entrypointNumGpus": {"type": "number"},
                "ttlSecondsAfterFinished": INT32,
                "shutdownAfterJobFinishes": {"type": "boolean"},
                "suspend": {"type": "boolean"},
                "schedule": {"type": "string"},
            },
        },
    },
}

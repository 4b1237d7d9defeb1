"""Kueue's ``kueue.x-k8s.io/v1beta1`` objects as JSON Schemas: the fields the example sets.

Written from Kueue's CRDs (``config/components/crd/bases``): names and JSON types as
the CRDs have them, ``required`` where they require, Kubernetes names where they
take one, and unknown names refused (``additionalProperties: false``) so that a
misspelt field fails here rather than being pruned by the API server. A real API
server with Kueue's CRDs would also run their CEL rules (for example at most 16
flavors and covered resources, quotas as quantities) and check the references
between the objects, which the tests check themselves.
"""

NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
QUANTITY = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
TOLERATION = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "key": {"type": "string"},
        "operator": {"enum": ["Exists", "Equal"]},
        "value": {"type": "string"},
        "effect": {"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
        "tolerationSeconds": {"type": "integer"},
    },
}
METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": NAME, "namespace": NAME, "labels": STR_MAP},
}


def _object(kind: str, body: dict, required: tuple[str, ...] = ("spec",)) -> dict:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", *required],
        "properties": {
            "apiVersion": {"const": "kueue.x-k8s.io/v1beta1"},
            "kind": {"const": kind},
            "metadata": METADATA,
            **body,
        },
    }


RESOURCE_FLAVOR = _object(
    "ResourceFlavor",
    {
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "nodeLabels": {**STR_MAP, "maxProperties": 8},
                "nodeTaints": {"type": "array", "maxItems": 8},
                "tolerations": {"type": "array", "items": TOLERATION, "maxItems": 8},
                "topologyName": {"type": "string"},
            },
        }
    },
)
FLAVOR_QUOTAS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "resources"],
    "properties": {
        "name": NAME,
        "resources": {
            "type": "array",
            "minItems": 1,
            "maxItems": 16,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "nominalQuota"],
                "properties": {
                    "name": {"type": "string"},
                    "nominalQuota": QUANTITY,
                    "borrowingLimit": QUANTITY,
                    "lendingLimit": QUANTITY,
                },
            },
        },
    },
}
CLUSTER_QUEUE = _object(
    "ClusterQueue",
    {
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "resourceGroups": {
                    "type": "array",
                    "maxItems": 16,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["coveredResources", "flavors"],
                        "properties": {
                            "coveredResources": {
                                "type": "array",
                                "items": {"type": "string"},
                                "minItems": 1,
                                "maxItems": 16,
                            },
                            "flavors": {
                                "type": "array",
                                "items": FLAVOR_QUOTAS,
                                "minItems": 1,
                                "maxItems": 16,
                            },
                        },
                    },
                },
                "cohort": NAME,
                "queueingStrategy": {"enum": ["StrictFIFO", "BestEffortFIFO"]},
                "namespaceSelector": {"type": "object"},
                "flavorFungibility": {"type": "object"},
                "preemption": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "reclaimWithinCohort": {"enum": ["Never", "LowerPriority", "Any"]},
                        "borrowWithinCohort": {"type": "object"},
                        "withinClusterQueue": {
                            "enum": ["Never", "LowerPriority", "LowerOrNewerEqualPriority"]
                        },
                    },
                },
                "admissionChecks": {"type": "array", "items": {"type": "string"}},
                "admissionChecksStrategy": {"type": "object"},
                "stopPolicy": {"enum": ["None", "Hold", "HoldAndDrain"]},
                "fairSharing": {"type": "object"},
            },
        }
    },
)
LOCAL_QUEUE = _object(
    "LocalQueue",
    {
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "clusterQueue": NAME,
                "stopPolicy": {"enum": ["None", "Hold", "HoldAndDrain"]},
            },
        }
    },
)
WORKLOAD_PRIORITY_CLASS = _object(
    "WorkloadPriorityClass",
    {
        "value": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
        "description": {"type": "string"},
    },
    required=("value",),
)
SCHEMAS = {
    "ResourceFlavor": RESOURCE_FLAVOR,
    "ClusterQueue": CLUSTER_QUEUE,
    "LocalQueue": LOCAL_QUEUE,
    "WorkloadPriorityClass": WORKLOAD_PRIORITY_CLASS,
}

#!/usr/bin/env bash
# kind smoke test: the gmpo-kfp pipeline on a throwaway Kubernetes cluster.
#
# Creates a kind cluster, installs Kubeflow Pipelines standalone at the SDK's version,
# labels the node and installs the fake GPU operator (as KFP's own CI does) so the
# pipeline keeps its GPU requests, applies manifests/overlays/kind, builds the runtime
# image and loads it (tagged as every image of the pipeline: the tiny-cpu preset trains
# on CPU), submits the pipeline with the tiny-cpu preset, waits for it to succeed, and
# checks the registered model's manifest in the cluster's S3 store.
#
# Needs: docker (a running engine), kind, kubectl, helm, and python3 with this package
# installed (python3 -m pip install -e .). Run from anywhere:  tests/e2e/kind_smoke.sh
# Environment: CLUSTER (gmpo-smoke), KFP_VERSION (the installed kfp SDK's),
# KEEP_CLUSTER=1 to keep the cluster afterwards, RUN_TIMEOUT (seconds, 3600).
set -euo pipefail

for tool in docker kind kubectl helm python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "kind_smoke: $tool not found; install it first (needs docker, kind, kubectl, helm, python3)" >&2
    exit 2
  fi
done
if ! python3 -c "import gmpo_kfp" 2>/dev/null; then
  echo "kind_smoke: the gmpo_kfp package is not importable; run: python3 -m pip install -e ." >&2
  exit 2
fi

cd "$(dirname "$0")/../.."
CLUSTER="${CLUSTER:-gmpo-smoke}"
KFP_VERSION="${KFP_VERSION:-$(python3 -c 'import kfp; print(kfp.__version__)')}"
RUN_TIMEOUT="${RUN_TIMEOUT:-3600}"
NAMESPACE=kubeflow
RUNTIME_IMAGE="$(python3 -m gmpo_kfp images runtime)"
KFP_MANIFESTS="github.com/kubeflow/pipelines/manifests/kustomize"
PIDS=()

say() { echo "kind_smoke: $*" >&2; }

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ "${KEEP_CLUSTER:-0}" != 1 ]]; then kind delete cluster --name "$CLUSTER" || true; fi
}
trap cleanup EXIT

forward() { # forward SERVICE LOCAL:REMOTE, and wait until the local port answers
  kubectl -n "$NAMESPACE" port-forward "svc/$1" "$2" >/dev/null 2>&1 &
  PIDS+=("$!")
  local port="${2%%:*}"
  for _ in $(seq 60); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; then return 0; fi
    sleep 2
  done
  say "port-forward to $1 did not come up"
  return 1
}

say "cluster $CLUSTER"
if ! kind get clusters | grep -qx "$CLUSTER"; then kind create cluster --name "$CLUSTER" --wait 180s; fi

say "Kubeflow Pipelines $KFP_VERSION (standalone)"
kubectl apply -k "$KFP_MANIFESTS/cluster-scoped-resources?ref=$KFP_VERSION"
kubectl wait --for condition=established --timeout=120s crd/applications.app.k8s.io
kubectl apply -k "$KFP_MANIFESTS/env/platform-agnostic?ref=$KFP_VERSION"
kubectl -n "$NAMESPACE" wait --for=condition=Available --timeout=1200s deployment --all

say "fake GPUs"
kubectl label node --all run.ai/simulated-gpu-node-pool=default nvidia.com/gpu.present=true --overwrite
helm upgrade --install gpu-operator oci://ghcr.io/run-ai/fake-gpu-operator/fake-gpu-operator \
  --namespace gpu-operator --create-namespace --set topology.nodePools.default.gpuCount=2 --wait
for _ in $(seq 60); do
  gpus="$(kubectl get nodes -o jsonpath='{.items[0].status.allocatable.nvidia\.com/gpu}')"
  if [[ -n "$gpus" && "$gpus" != 0 ]]; then break; fi
  sleep 5
done
[[ -n "${gpus:-}" && "$gpus" != 0 ]] || { say "no nvidia.com/gpu became allocatable"; exit 1; }

say "image $RUNTIME_IMAGE"
python3 -m gmpo_kfp images build runtime  # the published base, from the registries
for name in trainer eval; do
  docker tag "$RUNTIME_IMAGE" "$(python3 -m gmpo_kfp images "$name")"
done
for name in runtime trainer eval; do
  kind load docker-image --name "$CLUSTER" "$(python3 -m gmpo_kfp images "$name")"
done

say "manifests/overlays/kind"
kubectl apply -k manifests/overlays/kind
ACCESS_KEY="$(kubectl -n "$NAMESPACE" get secret mlpipeline-minio-artifact -o jsonpath='{.data.accesskey}' | base64 -d)"
SECRET_KEY="$(kubectl -n "$NAMESPACE" get secret mlpipeline-minio-artifact -o jsonpath='{.data.secretkey}' | base64 -d)"
kubectl -n "$NAMESPACE" create secret generic gmpo-s3-credentials \
  --from-literal=AWS_ACCESS_KEY_ID="$ACCESS_KEY" \
  --from-literal=AWS_SECRET_ACCESS_KEY="$SECRET_KEY" \
  --from-literal=AWS_ENDPOINT_URL=http://minio-service.kubeflow:9000 \
  --dry-run=client -o yaml | kubectl apply -f -

forward minio-service 9000:9000
forward ml-pipeline 8888:8888
export AWS_ACCESS_KEY_ID="$ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SECRET_KEY"
export AWS_ENDPOINT_URL=http://127.0.0.1:9000 AWS_DEFAULT_REGION=us-east-1
python3 - <<'PY'
from gmpo_kfp.storage import s3_client

client = s3_client()
if "gmpo" not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
    client.create_bucket(Bucket="gmpo")
PY

say "submit (tiny-cpu) and wait up to $RUN_TIMEOUT s"
python3 -m gmpo_kfp submit --host http://127.0.0.1:8888 --preset tiny-cpu \
  --param gpus=1 --param model_name=gmpo-kind-smoke --wait "$RUN_TIMEOUT"

say "registered manifest"
python3 - <<'PY'
import json

from gmpo_kfp.storage import open_store

store = open_store("s3://gmpo/registry/gmpo-kind-smoke")
manifests = sorted(k for k in store.list_keys() if k.endswith("/manifest.json"))
assert manifests, "no registered version in s3://gmpo/registry/gmpo-kind-smoke"
manifest = json.loads(store.get_bytes(manifests[-1]))
print(json.dumps({k: manifest[k] for k in sorted(manifest) if k != "files"}, indent=2))
PY
say "passed"

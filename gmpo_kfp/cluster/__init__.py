"""The Kubernetes side: kustomize manifests as data, recurring runs, the metrics export.

:mod:`.manifests` writes ``manifests/`` (RBAC, the shared volume, the KFP launcher
patch, the CronWorkflows, the PrometheusRule); :mod:`.schedule` creates KFP recurring
runs; :mod:`.prometheus` pushes run metrics to a Pushgateway. The cluster facts they
use (images, node labels, resources, the bucket) live in :mod:`gmpo_kfp.settings`;
the RayJob is an engine (:mod:`gmpo_kfp.engines.rayjob`).
"""

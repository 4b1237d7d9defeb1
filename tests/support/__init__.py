"""What the tests share: stand-ins for servers that cannot run here (a Kubernetes API
server, KubeRay), helpers around the real ones (moto_server, a Pushgateway, Kubeflow's
Model Registry), fault injection, worker processes, and random policy-loss batches.
Each module's docstring says what it stands in for or wraps."""

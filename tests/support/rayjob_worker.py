"""Runs the RayJob runner against a given API URL (a subprocess the cancel test signals)."""

import sys

from gmpo_kfp.engines.rayjob import RayJobRunner
from tests.support.kube_api_server import api_client
from tests.unit.test_rayjob import build

if __name__ == "__main__":
    runner = RayJobRunner(api_client(sys.argv[1]), "kubeflow-user", poll_s=0.05)
    runner.run(build())

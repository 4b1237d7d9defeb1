"""The whole pipeline through ``kfp.local.DockerRunner``: every step in its CPU image.

As a pod runs them: uid 1000, a read-only root filesystem, ``/tmp`` writable, no
network (the S3 variant: the host's, to reach moto_server on loopback).
"""

from __future__ import annotations

import json

import boto3
import pytest

from gmpo_kfp.workflow.kfp_runs import SMOKE_OVERRIDES, run_local
from gmpo_kfp.workflow.registry import resolve
from tests.support.s3server import moto_server, s3_env

pytestmark = pytest.mark.slow


def test_pipeline_in_containers_registers_a_version(docker_run):
    result, out = docker_run
    assert result.train_metrics["steps"] == 3.0 and result.pass_at_1 is not None
    assert result.passed is True and result.registered_version == 1
    manifest = json.loads(result.manifest.read_text())
    assert manifest["config"]["trainer"]["total_steps"] == 3
    # the files the steps wrote are their user's (uid 1000), in the host's folders
    assert result.manifest.stat().st_uid == 1000
    (model,) = (out / "runs").glob("*/model/config.json")
    assert model.stat().st_uid == 1000


def test_pipeline_in_containers_on_s3(cpu_images, tmp_path):
    short = ["sft.enabled=false", *SMOKE_OVERRIDES[1:]]
    with moto_server() as endpoint, s3_env(endpoint):
        boto3.client("s3").create_bucket(Bucket="gmpo")
        params = [
            "threshold=0.0",
            "registry_uri=s3://gmpo/registry",
            "output_root=s3://gmpo/runs",
        ]
        result = run_local(tmp_path / "out", overrides=short, params=params, runner="docker")
        assert result.passed is True
        manifest = resolve("s3://gmpo/registry", "gmpo-tiny")
        assert manifest["version"] == 1
        keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="gmpo")["Contents"]]
        assert any(k.startswith("runs/") and k.endswith("model/config.json") for k in keys)

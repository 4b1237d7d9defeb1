"""The RayJob runner through the real kubernetes client against a loopback API server."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gmpo_kfp import settings
from gmpo_kfp.engines import rayjob
from tests.support.kube_api_server import FAILURE, FOREVER, FakeKubeAPI, api_client, serve_kube_api
from tests.unit.test_rayjob import build, two_nodes

NS = "kubeflow-user"
JOB_PATH = "/apis/ray.io/v1/namespaces/kubeflow-user/rayjobs"


def runner(url, out):
    return rayjob.RayJobRunner(api_client(url), NS, poll_s=0.01, out=out)


def test_submit_watch_stream_logs_and_succeed():
    api = FakeKubeAPI()
    out = io.StringIO()
    with serve_kube_api(api) as url:
        status = runner(url, out).run(build())
    assert status["jobStatus"] == "SUCCEEDED"
    assert ("POST", JOB_PATH) in api.requests
    created = api.jobs[(NS, "gmpo-r1-0123456789")]
    assert created["spec"]["entrypoint"] == build()["spec"]["entrypoint"]
    text = out.getvalue()
    assert "created RayJob gmpo-r1-0123456789" in text
    assert "deployment Running, job RUNNING" in text
    assert "deployment Complete, job SUCCEEDED" in text
    # the driver's log is streamed once, in order, without repeats
    lines = [line for line in text.splitlines() if line.startswith("driver line")]
    assert lines == [f"driver line {i}" for i in range(len(lines))] and len(lines) >= 3


def test_a_queued_job_says_it_waits_for_kueue_then_runs_once_admitted():
    api = FakeKubeAPI(admit_after=20)
    job = build(two_nodes(**{"kueue.queue": "team-a"}))
    out = io.StringIO()
    with serve_kube_api(api) as url:
        status = rayjob.RayJobRunner(
            api_client(url), NS, poll_s=0.01, out=out, wait_note_s=0.05
        ).run(job)
    assert status["jobStatus"] == "SUCCEEDED"
    created = api.jobs[(NS, job["metadata"]["name"])]
    assert created["metadata"]["labels"][settings.KUEUE_QUEUE_LABEL] == "team-a"
    lines = out.getvalue().splitlines()
    waiting = [i for i, line in enumerate(lines) if "waiting for Kueue admission" in line]
    (admitted,) = [i for i, line in enumerate(lines) if "admitted by Kueue after" in line]
    assert "waiting for Kueue admission (queue team-a)" in lines[waiting[0]]
    assert any("still waiting for Kueue admission (queue team-a, " in lines[i] for i in waiting)
    # while queued, no job status is reported as if it were running, and it runs after
    assert max(waiting) < admitted
    assert not any("deployment Suspended" in line for line in lines)
    assert any("deployment Complete, job SUCCEEDED" in line for line in lines[admitted:])


def test_a_failed_job_fails_the_step_with_its_reason():
    api = FakeKubeAPI(FAILURE)
    with serve_kube_api(api) as url, pytest.raises(rayjob.RayJobFailed) as err:
        runner(url, io.StringIO()).run(build())
    assert "(AppFailed): Job entrypoint command failed with exit code 1" in str(err.value)


def test_a_retried_step_picks_up_its_running_job_instead_of_starting_another():
    api = FakeKubeAPI()
    job = build()
    api.add_job(NS, job, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
    api.step[(NS, job["metadata"]["name"])] = 2  # KubeRay moves it on: RUNNING, SUCCEEDED
    out = io.StringIO()
    with serve_kube_api(api) as url:
        status = runner(url, out).run(job)
    assert status["jobStatus"] == "SUCCEEDED"
    assert not [r for r in api.requests if r[0] == "POST"]
    assert "picking up RayJob gmpo-r1-0123456789" in out.getvalue()


def test_a_retried_step_replaces_its_failed_job():
    api = FakeKubeAPI()
    job = build()
    api.add_job(NS, job, FAILURE[-1])
    with serve_kube_api(api) as url:
        status = runner(url, io.StringIO()).run(job)
    assert status["jobStatus"] == "SUCCEEDED"
    methods = [m for m, p in api.requests if p.startswith(JOB_PATH)]
    assert methods.index("DELETE") < methods.index("POST")


def test_sigterm_deletes_the_job(tmp_path):
    api = FakeKubeAPI(FOREVER)
    root = Path(__file__).resolve().parents[2]
    with serve_kube_api(api) as url:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.rayjob_worker", url],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        deadline = time.monotonic() + 60
        while (NS, "gmpo-r1-0123456789") not in api.jobs and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (NS, "gmpo-r1-0123456789") in api.jobs, proc.communicate(timeout=5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "cancelled: deleting RayJob gmpo-r1-0123456789" in err
    assert ("DELETE", f"{JOB_PATH}/gmpo-r1-0123456789") in api.requests
    assert (NS, "gmpo-r1-0123456789") not in api.jobs


def test_run_on_kuberay_needs_the_output_on_the_shared_volume(tmp_path):
    config = two_nodes(**{"trainer.output_dir": str(tmp_path / "run")})
    with pytest.raises(rayjob.ConfigError, match=r"trainer.output_dir: .* shared volume"):
        rayjob.run_on_kuberay(config, command=["true"], env={}, client=object(), namespace=NS)


def test_run_on_kuberay_names_the_job_after_the_output_folder(tmp_path):
    api = FakeKubeAPI()
    config = two_nodes(**{"trainer.output_dir": str(tmp_path / "run-7")})
    with serve_kube_api(api) as url:
        status = rayjob.run_on_kuberay(
            config,
            command=["python3", "-m", "verl.trainer.main_ppo"],
            env={"VERL_FILE_LOGGER_PATH": "m.jsonl"},
            client=api_client(url),
            namespace=NS,
            poll_s=0.01,
            shared_mount=str(tmp_path),
        )
    assert status["jobStatus"] == "SUCCEEDED"
    ((_ns, name),) = api.jobs
    assert name == rayjob.rayjob_name(str((tmp_path / "run-7").resolve()))
    assert name.startswith("gmpo-run-7-")

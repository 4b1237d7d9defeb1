"""Prometheus export: a scraped /metrics endpoint and a real Pushgateway on loopback."""

from __future__ import annotations

import json

import pytest

from gmpo_kfp import metrics as M
from gmpo_kfp import settings
from gmpo_kfp.cluster.prometheus import Exporter, MetricsFollower, push_results
from tests.integration.test_trl_engine import data, tiny_config  # noqa: F401
from tests.support.pushgateway import pushgateway, samples, scrape
from tests.support.s3server import free_port

RECORD = {
    "step": 7,
    "data": {
        M.SCORE_MEAN: 0.5,
        M.PG_LOSS: -0.1,
        M.PG_CLIPFRAC: 0.02,
        M.ENTROPY: 0.8,
        M.TOKEN_RATIO_MIN: 0.7,
        M.TOKEN_RATIO_MAX: 1.3,
        M.TIME_PER_STEP: 0.25,
    },
}


@pytest.fixture(scope="module")
def gateway():
    with pushgateway() as url:
        yield url


def exporter(**kw):
    args = {
        "pipeline": settings.PIPELINE_NAME,
        "model": "tiny",
        "stage": "train",
        "info": {"run_id": "r1"},
    }
    return Exporter(**(args | kw))


def test_the_endpoint_serves_the_gauges_over_http():
    exp = exporter()
    exp.observe(RECORD)
    exp.observe({"step": 8, "data": {M.PG_LOSS: None}})  # a NaN loss, as the file writes it
    server = exp.serve(free_port(), "127.0.0.1")
    try:
        families = scrape(f"http://127.0.0.1:{server.server_address[1]}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    assert samples(families, "gmpo_reward_mean")[0].value == 0.5
    assert samples(families, "gmpo_token_ratio_max")[0].value == 1.3
    assert samples(families, "gmpo_step")[0].value == 8
    assert samples(families, M.PROM_NONFINITE)[0].value == 1
    assert samples(families, M.PROM_LAST_STEP_TIME)[0].value > 1e9
    (info,) = samples(families, "gmpo_run_info")
    assert info.labels == {"run_id": "r1"}
    # every exported name is in the one list, and the list names nothing unexported
    exported = {s.name for f in families for s in f.samples if s.name.startswith("gmpo_")}
    assert exported <= M.prometheus_names()


def test_a_push_is_grouped_by_stable_keys_and_a_new_run_replaces_the_old(gateway):
    first = exporter(info={"run_id": "run-1"})
    first.observe(RECORD)
    assert first.push(gateway)
    second = exporter(info={"run_id": "run-2"})
    second.observe({"step": 3, "data": {M.SCORE_MEAN: 0.9}})
    assert second.push(gateway)
    families = scrape(f"{gateway}/metrics")
    rewards = samples(families, "gmpo_reward_mean")
    assert len(rewards) == 1  # one group: run ids do not pile up
    assert rewards[0].value == 0.9
    assert {k: rewards[0].labels[k] for k in ("job", "pipeline", "model", "stage")} == {
        "job": "gmpo",
        "pipeline": settings.PIPELINE_NAME,
        "model": "tiny",
        "stage": "train",
    }
    assert "run_id" not in rewards[0].labels
    (info,) = samples(families, "gmpo_run_info")
    assert info.labels["run_id"] == "run-2"


def test_evaluation_and_registration_push_pass_at_1_and_the_version(gateway):
    assert push_results(
        stage="evaluate", model="m", gateway=gateway, pass_at_1={"gsm8k": 0.7, "average": 0.7}
    )
    assert push_results(stage="register", model="m", gateway=gateway, version=4)
    families = scrape(f"{gateway}/metrics")
    passes = {
        s.labels["benchmark"]: s.value
        for s in samples(families, "gmpo_pass_at_1")
        if s.labels["model"] == "m"
    }
    assert passes == {"gsm8k": 0.7, "average": 0.7}
    (version,) = [
        s for s in samples(families, "gmpo_registered_version") if s.labels["model"] == "m"
    ]
    assert version.value == 4 and version.labels["stage"] == "register"


def test_an_unreachable_gateway_warns_once_and_never_raises(capsys):
    exp = exporter()
    port = free_port()
    assert not exp.push(f"http://127.0.0.1:{port}")
    assert not exp.push(f"http://127.0.0.1:{port}")
    assert capsys.readouterr().err.count("refused a push") == 1


def test_the_follower_reads_whole_records_as_the_file_grows(tmp_path, gateway):
    path = tmp_path / "metrics.jsonl"
    exp = exporter(model="follow")
    follower = MetricsFollower(path, exp, gateway=gateway, push_every=2)
    assert follower.poll() == 0  # no file yet
    lines = [json.dumps({"step": s, "data": {M.SCORE_MEAN: s / 10}}) + "\n" for s in (1, 2, 3)]
    blob = "".join(lines)
    cut = len(lines[0]) + 5  # the second record only half written
    path.write_text(blob[:cut])
    assert follower.poll() == 1
    with path.open("a") as fh:
        fh.write(blob[cut:])
    assert follower.poll() == 2
    follower.stop()
    families = scrape(f"{gateway}/metrics")
    (reward,) = [s for s in samples(families, "gmpo_reward_mean") if s.labels["model"] == "follow"]
    assert reward.value == pytest.approx(0.3)


def test_training_pushes_its_metrics(tmp_path, data, gateway):  # noqa: F811
    from gmpo_kfp.config import apply_overrides
    from gmpo_kfp.engines.training import train

    config = apply_overrides(
        tiny_config(tmp_path / "run", data, **{"trainer.total_steps": 2}),
        [f"monitoring.pushgateway={gateway}", "monitoring.push_every=1", "name=pushed"],
    )
    train(config, progress=False)
    families = scrape(f"{gateway}/metrics")
    (step,) = [s for s in samples(families, "gmpo_step") if s.labels["model"] == "pushed"]
    assert step.value == 2 and step.labels["stage"] == "train"
    (info,) = [s for s in samples(families, "gmpo_run_info") if s.labels["model"] == "pushed"]
    assert info.labels["engine"] == "trl" and info.labels["loss"] == "gmpo"


def test_gpu_memory_comes_from_what_the_training_processes_report():
    from prometheus_client import generate_latest

    # verl's workers report their peak in every record (0 on verl's CPU platform)
    on_cpu = exporter()
    on_cpu.observe({"step": 1, "data": {**RECORD["data"], M.GPU_MEMORY_GB: 0.0}})
    assert M.PROM_GPU_MEMORY not in generate_latest(on_cpu.registry).decode()

    on_gpu = exporter()
    on_gpu.observe({"step": 1, "data": {**RECORD["data"], M.GPU_MEMORY_GB: 12.5}})
    text = generate_latest(on_gpu.registry).decode()
    (line,) = [x for x in text.splitlines() if x.startswith(M.PROM_GPU_MEMORY + " ")]
    assert float(line.split()[1]) == 12.5 * 2**30

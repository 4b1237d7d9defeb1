"""vLLM evaluates for real: its CPU build in the eval image, against the transformers backend.

The model is the one the pipeline in containers trained (warm-up to Pass@1 ~0.1, so
there are right and wrong answers); the problems are its validation set. Both backends
run greedy in float32 in the same container. Tolerance: the texts of at least 98% of
the problems are identical (a greedy argmax can flip where two logits tie to within
float32 rounding, and vLLM's CPU kernels sum in another order than torch's), and Pass@1
differs by at most the share of problems whose texts differ, itself at most 0.02.
Identical texts are a stronger check than the aggregate: equal Pass@1 could hide
compensating errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gmpo_kfp.evaluation.evaluate import vllm_on_cpu

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent
PROBLEMS = 256
MIN_AGREEMENT = 0.98


def test_vllm_and_transformers_agree_on_greedy_completions(
    docker_run, cpu_images, docker, tmp_path
):
    _, out = docker_run
    (model,) = (out / "runs").glob("*/model")
    (val,) = (out / "pipeline-root").glob("*/prepare-data/val_data")
    tmp_path.chmod(0o777)  # the container's user, uid 1000, writes the report
    report = tmp_path / "greedy-pair.json"
    mounts = [
        f"--volume={HERE}:/tests:ro",
        f"--volume={out}:{out}:ro",
        f"--volume={tmp_path}:{tmp_path}",
        "--read-only",
        "--tmpfs=/tmp:rw,exec",
        "--shm-size=2g",
    ]
    docker.container_run(
        cpu_images["eval"].spec.ref,
        "python",
        "/tests/greedy_pair.py",
        str(model),
        str(val),
        str(report),
        str(PROBLEMS),
        "4",
        options=mounts,
        timeout=900,
    )
    pair = json.loads(report.read_text())
    v, t = pair["vllm"]["texts"], pair["transformers"]["texts"]
    assert len(v) == len(t) == PROBLEMS
    same = sum(a == b for a, b in zip(v, t, strict=True)) / PROBLEMS
    scores = {k: round(pair[k]["pass_at_1"], 3) for k in ("vllm", "transformers")}
    print(f"greedy texts identical on {same:.3f} of {PROBLEMS} problems; Pass@1 {scores}")
    assert same >= MIN_AGREEMENT, list(zip(v, t, strict=True))[:20]
    gap = abs(pair["vllm"]["pass_at_1"] - pair["transformers"]["pass_at_1"])
    assert gap <= 1 - same + 1e-9
    assert 0 < pair["vllm"]["pass_at_1"] < 1  # a model with right and wrong answers


def test_vllm_cpu_build_is_not_what_this_environment_has():
    # the host's evaluation takes the transformers backend; vLLM runs in its image only
    assert vllm_on_cpu() is False

"""Pass@1 with transformers generation: protocols, grading, bad inputs, the CLI."""

from __future__ import annotations

import json

import pytest

from gmpo_kfp import reward
from gmpo_kfp.data.arithmetic import arithmetic_rows
from gmpo_kfp.data.schema import write_rl_parquet
from gmpo_kfp.evaluation.evaluate import EvalError, evaluate, generate, pass_at_1, protocol_settings
from gmpo_kfp.evaluation.models import build_tiny_model, load_model_and_tokenizer
from tests.unit.test_cli import gmpo


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("m") / "tiny")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_rl_parquet(
        arithmetic_rows("test", limit=24), tmp_path_factory.mktemp("d") / "t.parquet"
    )


def test_protocols():
    assert protocol_settings("greedy") == {"temperature": 0.0, "top_p": 1.0, "n": 1}
    assert protocol_settings("sampled") == {"temperature": 0.6, "top_p": 0.95, "n": 16}
    assert protocol_settings("sampled", 4)["n"] == 4
    with pytest.raises(EvalError, match="protocol must be one of greedy, sampled"):
        protocol_settings("beam")
    with pytest.raises(EvalError, match="n must be 1 with protocol=greedy"):
        protocol_settings("greedy", 4)


def test_pass_at_1_is_the_mean_grade_of_the_generated_answers(tiny):
    model, tok = load_model_and_tokenizer(str(tiny))
    rows = arithmetic_rows("test", limit=16)
    result = pass_at_1(model, tok, rows, protocol="sampled", n=3, max_new_tokens=4, seed=5)
    samples = generate(
        model,
        tok,
        [r["prompt"] for r in rows],
        temperature=0.6,
        top_p=0.95,
        n=3,
        max_new_tokens=4,
        seed=5,
    )
    expected = [
        sum(reward.grade("arithmetic", s, r["reward_model"]["ground_truth"]).correct for s in ss)
        / 3
        for r, ss in zip(rows, samples, strict=True)
    ]
    assert result.correct == expected
    assert result.pass_at_1 == {"arithmetic": pytest.approx(sum(expected) / len(expected))}
    assert result.samples_per_problem == 3 and result.problems == 16
    assert all(len(ss) == 3 for ss in samples)
    # greedy is deterministic whatever the seed
    a = generate(model, tok, [r["prompt"] for r in rows], temperature=0.0, max_new_tokens=4, seed=1)
    b = generate(model, tok, [r["prompt"] for r in rows], temperature=0.0, max_new_tokens=4, seed=2)
    assert a == b


def test_evaluate_reads_parquet_and_limits(tiny, data):
    result = evaluate(tiny, [data], max_new_tokens=4, limit=8)
    assert result.problems == 8 and set(result.pass_at_1) == {"arithmetic"}
    assert 0.0 <= result.mean <= 1.0
    with pytest.raises(EvalError, match="data_files: none given"):
        evaluate(tiny, [])


def test_cli_evaluate_prints_a_table_and_writes_json(tiny, data, tmp_path):
    out = gmpo(
        "evaluate",
        str(tiny),
        str(data),
        "--max-new-tokens",
        "4",
        "--limit",
        "8",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith("arithmetic")
    assert json.loads((tmp_path / "r.json").read_text())["problems"] == 8


def test_cli_evaluate_bad_inputs_are_one_line(tmp_path, data):
    out = gmpo("evaluate", str(tmp_path / "nowhere"), str(data))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "does not exist" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text("{}")
    out = gmpo("evaluate", str(tmp_path / "noweights"), str(data))
    assert out.returncode == 2 and "has no weights" in out.stderr


def test_backend_choice_and_a_clear_error_without_vllm(tiny, data, monkeypatch):
    import importlib.util

    from gmpo_kfp.evaluation.evaluate import choose_backend

    assert choose_backend("transformers") == "transformers"
    with pytest.raises(EvalError, match="backend must be one of auto, transformers, vllm"):
        choose_backend("tgi")
    if importlib.util.find_spec("vllm") is None:
        assert choose_backend("auto") == "transformers"
        with pytest.raises(EvalError, match=r"backend vllm: vLLM is not installed"):
            evaluate(tiny, [data], backend="vllm", max_new_tokens=4)

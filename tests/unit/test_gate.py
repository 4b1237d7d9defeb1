"""The registration gate: a new model is promoted only when it beats production."""

from __future__ import annotations

import pytest

from gmpo_kfp.workflow.gate import Champion, Gate, GateError, decide, gate_from_params, markdown

GATE = Gate(threshold=0.3, tolerance=0.02, margin=0.01)
CHAMPION = Champion(version=3, pass_at_1={"gsm8k": 0.60, "math": 0.50}, mean=0.55)


def test_without_a_champion_the_floor_alone_decides():
    assert decide({"gsm8k": 0.4}, 0.4, GATE).passed
    below = decide({"gsm8k": 0.2}, 0.2, GATE)
    assert not below.passed and below.reason == "mean Pass@1 0.2000 is below the floor 0.3"


def test_the_floor_holds_even_against_a_weaker_champion():
    weak = Champion(version=1, pass_at_1={"gsm8k": 0.1}, mean=0.1)
    assert not decide({"gsm8k": 0.25}, 0.25, GATE, weak).passed


def test_a_regression_on_one_benchmark_beyond_the_tolerance_fails_despite_a_better_mean():
    d = decide({"gsm8k": 0.55, "math": 0.80}, 0.675, GATE, CHAMPION)
    assert not d.passed
    assert d.reason.startswith("gsm8k: Pass@1 0.5500 is 0.0500 below production (version 3)")
    assert d.differences == pytest.approx({"gsm8k": -0.05, "math": 0.30})


def test_a_mean_that_does_not_beat_the_champion_by_the_margin_fails():
    d = decide({"gsm8k": 0.60, "math": 0.505}, 0.5525, GATE, CHAMPION)
    assert not d.passed and "does not beat production (version 3)'s 0.5500" in d.reason


def test_better_on_the_mean_and_nowhere_much_worse_passes():
    d = decide({"gsm8k": 0.59, "math": 0.56}, 0.575, GATE, CHAMPION)
    assert d.passed and d.reason.startswith("beats production (version 3)")
    assert d.champion == CHAMPION
    table = markdown({"gsm8k": 0.59, "math": 0.56}, 0.575, d)
    assert table[0] == "| benchmark | new model | production (version 3) | difference |"
    assert "| gsm8k | 0.5900 | 0.6000 | -0.0100 |" in table
    assert table[-1] == "| **average** | **0.5750** | 0.5500 | +0.0250 |"


def test_a_champion_scored_on_a_benchmark_the_new_model_was_not_is_a_bug():
    with pytest.raises(ValueError, match="not scored on math"):
        decide({"gsm8k": 0.9}, 0.9, GATE, CHAMPION)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"tolerance": -0.1}, "tolerance: -0.1 is out of range"),
        ({"margin": 2}, "margin: 2.0 is out of range"),
        ({"threshold": "high"}, "threshold: 'high' is not a number"),
    ],
)
def test_gate_settings_out_of_range_name_the_parameter(params, message):
    with pytest.raises(GateError, match=message):
        gate_from_params(params)


def test_the_pipeline_defaults_are_the_gate_defaults():
    import inspect

    from gmpo_kfp.pipelines.gmpo_training import gmpo_training

    signature = inspect.signature(gmpo_training.pipeline_func).parameters
    assert signature["tolerance"].default == Gate().tolerance
    assert signature["margin"].default == Gate().margin
    from gmpo_kfp.components.evaluate import evaluate

    component = inspect.signature(evaluate.python_func).parameters
    assert component["tolerance"].default == Gate().tolerance
    assert component["margin"].default == Gate().margin

"""Grading by data_source, bounded time, and the two engine adapters."""

from __future__ import annotations

import threading
import time

import pytest

from gmpo_kfp import reward
from tests.support.slow_worker import scripted_worker


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{5}", "5"),
        ("a \\boxed{1} b \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\frac{1}{2}", None),
        ("nothing", None),
        ("\\fbox{7}", "7"),
        ("\\boxed {x^{2}}", "x^{2}"),
    ],
)
def test_last_boxed(text, expected):
    assert reward.last_boxed(text) == expected


@pytest.mark.parametrize(
    ("response", "truth", "correct"),
    [
        ("52", "52", True),
        (" 52 ", "52", True),
        ("\\boxed{52}", "52", True),
        ("052", "52", True),
        ("52", "052", True),  # the task's truths are zero-padded; a bare value is right
        ("152", "052", False),
        ("53", "52", False),
        ("5", "52", False),
        ("", "52", False),
        ("52+", "52", False),
        ("52", ["51", "52"], True),
    ],
)
def test_arithmetic_grader(response, truth, correct):
    g = reward.grade("arithmetic", response, truth)
    assert g.correct is correct and g.score == float(correct)


def test_a_list_of_ground_truths_counts_if_any_matches():
    assert reward.grade("openai/gsm8k", "#### 4", ["3", "4"]).correct
    assert reward.grade("math_dapo", "Answer: 4", ["3", "4"]).score == 1.0
    assert not reward.grade("openai/gsm8k", "#### 5", ["3", "4"]).correct


def test_unknown_data_source_is_a_one_line_error_listing_the_known_ones():
    with pytest.raises(
        reward.RewardError, match=r"data_source: no grader for 'mystery'.*openai/gsm8k"
    ):
        reward.grade("mystery", "x", "y")


def test_math_verify_runs_in_a_bounded_helper_off_the_main_thread():
    results = {}

    def work():
        results["ok"] = reward.grade("math500", "\\boxed{0.25}", "\\frac{1}{4}").correct
        results["wrong"] = reward.grade("math500", "\\boxed{0.3}", "\\frac{1}{4}").correct

    t = threading.Thread(target=work)
    t.start()
    t.join(120)
    assert results == {"ok": True, "wrong": False}


def test_a_check_that_hangs_is_cut_at_the_timeout_and_the_helper_restarts():
    verifier = reward.BoundedVerifier(timeout_s=1.0, worker=scripted_worker)
    try:
        assert verifier("1", "1") is True
        start = time.monotonic()
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("r", verifier("1", "hang")))
        t.start()
        t.join(30)
        assert out == {"r": False}
        assert time.monotonic() - start < 10
        assert verifier.timeouts == 1
        assert verifier("2", "2") is True  # a fresh helper answers again
    finally:
        verifier.close()


def test_trl_adapter_reads_the_dataset_columns_and_conversational_completions():
    scores = reward.trl_reward(
        prompts=[[{"role": "user", "content": "1+1="}]] * 3,
        completions=[
            [{"role": "assistant", "content": "2"}],
            [{"role": "assistant", "content": "3"}],
            "#### 9",
        ],
        data_source=["arithmetic", "arithmetic", "openai/gsm8k"],
        reward_model=[{"ground_truth": "2"}, {"ground_truth": "2"}, {"ground_truth": "9"}],
    )
    assert scores == [1.0, 0.0, 1.0]


def test_verl_adapter_returns_score_and_accuracy():
    assert reward.compute_score("math_dapo", "Answer: 3", "4") == {"score": -1.0, "acc": 0.0}
    assert reward.compute_score("arithmetic", "7", "7", extra_info={}) == {"score": 1.0, "acc": 1.0}


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("10^\\circ", "10"),
        ("x = 3", "3"),
        ("1,000", "1000"),
        ("3/4", "\\frac{3}{4}"),
        ("\\left(1, 2\\right)", "(1,2)"),
        ("5.00", "5"),
        (".5", "0.5"),
    ],
)
def test_math_normal_form(raw, normal):
    assert reward.normalize_math(raw) == normal


def test_a_helper_that_dies_scores_the_answer_0_and_is_restarted():
    verifier = reward.BoundedVerifier(timeout_s=5.0, worker=scripted_worker)
    try:
        assert verifier("1", "1") is True
        assert verifier("1", "die") is False and verifier.deaths == 1
        assert verifier("2", "2") is True  # a fresh helper
        # dead between the liveness check and the request: the send itself fails
        verifier._conn.send = lambda _msg: (_ for _ in ()).throw(ConnectionResetError(104, "x"))
        assert verifier("3", "3") is False and verifier.deaths == 2
        assert verifier("4", "4") is True
    finally:
        verifier.close()


def test_math_takes_the_final_box_of_a_long_solution():
    solution = "We compute \\boxed{3} at first. " + "Then more work. " * 40 + "So \\boxed{7}."
    assert reward.grade("lighteval/MATH", solution, "7").correct
    # a box far from the end still counts (verl's math grader searches the whole response)
    assert reward.grade("lighteval/MATH", "\\boxed{7}" + " and we check it." * 40, "7").correct


def test_several_boxes_the_last_one_is_the_answer():
    response = "Either \\boxed{-2} or \\boxed{1}."
    assert reward.grade("lighteval/MATH", response, "1").correct
    assert not reward.grade("lighteval/MATH", response, "-2").correct


@pytest.mark.parametrize(
    ("response", "gold", "correct"),
    [
        ("Answer: 79", "079", True),  # AIME ships zero-padded answers
        ("Answer: 079", "79", True),
        ("Answer: 97", "079", False),
        ("\\boxed{079}", "79", True),  # the box fallback too
    ],
)
def test_aime_integers_compare_as_integers(response, gold, correct):
    assert reward.grade("aime-2024", response, gold).correct is correct


@pytest.mark.parametrize(
    ("answer", "gold", "correct"),
    [("32,349", "32349", True), ("32, 349", "32349", False), ("1,000,000", "1000000", True)],
)
def test_a_comma_joins_digits_only_as_a_thousands_separator(answer, gold, correct):
    assert reward.grade("lighteval/MATH", f"\\boxed{{{answer}}}", gold).correct is correct
    assert (reward.normalize_minerva(answer) == gold) is correct

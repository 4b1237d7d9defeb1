"""Our graders against verl 0.9.1's scorers on a table of responses."""

from __future__ import annotations

import pytest

from gmpo_kfp import reward

verl_scores = pytest.importorskip(
    "verl.utils.reward_score", reason="the [verl] extra is not installed"
)

GSM8K = [
    ("So 3 + 4 = 7.\n#### 7", "7"),  # right
    ("#### 8", "7"),  # wrong
    ("The answer is 7", "7"),  # no #### marker
    ("#### 1,234", "1234"),  # thousands separator
    ("#### -5", "-5"),
    ("work... #### 3 then #### 7", "7"),  # the last marker counts
    ("####7", "7"),  # no space: strict format fails
    ("x" * 400 + "#### 7", "7"),  # long response, answer in the tail
    ("#### 7" + "x" * 400, "7"),  # answer pushed out of the tail
    ("#### 7.5", "7.5"),
]

MATH = [
    ("so \\boxed{5}", "5"),
    ("\\boxed{6}", "5"),
    ("the answer is 5", "5"),  # unboxed
    ("\\boxed{\\frac{1}{2}", "\\frac{1}{2}"),  # truncated: unbalanced box
    ("\\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{\\frac12}", "\\frac{1}{2}"),
    ("\\boxed{ 10 }", "10"),
    ("\\boxed{10^\\circ}", "10"),
    ("\\boxed{1} then \\boxed{2}", "2"),
    ("\\boxed{x = 3}", "3"),
    ("\\boxed{\\left( 1, 2 \\right)}", "(1,2)"),
    ("\\boxed{\\sqrt{2}}", "\\sqrt{2}"),
    ("\\boxed{2\\sqrt{3}}", "2\\sqrt3"),
    ("\\boxed{\\text{(A)}}", "\\text{(A)}"),
]
# Equivalent forms math-verify proves and verl's string check does not: ours says correct.
MATH_EQUIVALENT = [
    ("\\boxed{0.25}", "\\frac{1}{4}"),
    ("\\boxed{\\frac{2}{4}}", "\\frac{1}{2}"),
    ("\\boxed{2+3}", "5"),
    ("\\boxed{3.0}", "3"),
]

DAPO = [
    ("Answer: 42", "42"),
    ("Answer: 41", "42"),
    ("the result is 42", "42"),  # no answer line, no box
    ("Answer: $42$", "42"),
    ("answer : 42 dollars", "42"),
    ("Answer: \\frac{1}{2}", "\\frac{1}{2}"),
    ("Answer: \\frac12", "\\frac{1}{2}"),
    ("Answer: 1,000", "1000"),
    ("Answer: x = 5", "5"),
    ("no line but \\boxed{42}", "42"),
    ("Answer: 3\nAnswer: 4", "4"),
    ("Answer: \\text{Monday}", "Monday"),
    ("Answer: 10^\\circ", "10"),
]


@pytest.mark.parametrize(("response", "truth"), GSM8K)
def test_gsm8k_agrees_with_verl(response, truth):
    theirs = verl_scores.default_compute_score("openai/gsm8k", response, truth)
    ours = reward.grade("openai/gsm8k", response, truth)
    assert ours.score == theirs


@pytest.mark.parametrize(("response", "truth"), MATH)
def test_math_agrees_with_verl(response, truth):
    theirs = verl_scores.default_compute_score(
        "DigitalLearningGmbH/MATH-lighteval", response, truth
    )
    ours = reward.grade("DigitalLearningGmbH/MATH-lighteval", response, truth)
    assert ours.score == theirs, (response, truth, ours)


@pytest.mark.parametrize(("response", "truth"), MATH_EQUIVALENT)
def test_math_verify_accepts_equivalent_forms_verl_rejects(response, truth):
    theirs = verl_scores.default_compute_score(
        "DigitalLearningGmbH/MATH-lighteval", response, truth
    )
    assert theirs == 0.0
    assert reward.grade("DigitalLearningGmbH/MATH-lighteval", response, truth).correct


@pytest.mark.parametrize("source", ["math_dapo", "aime-2024"])
@pytest.mark.parametrize(("response", "truth"), DAPO)
def test_dapo_agrees_with_verl(source, response, truth):
    theirs = verl_scores.default_compute_score(source, response, truth)
    ours = reward.grade(source, response, truth)
    assert ours.score == theirs["score"], (response, truth, ours, theirs)
    assert ours.correct == theirs["acc"]


def test_verl_custom_reward_function_adapter_matches_default_scores():
    for source, table in (("openai/gsm8k", GSM8K), ("math_dapo", DAPO)):
        for response, truth in table:
            theirs = verl_scores.default_compute_score(source, response, truth)
            theirs = theirs["score"] if isinstance(theirs, dict) else theirs
            assert reward.compute_score(source, response, truth)["score"] == theirs

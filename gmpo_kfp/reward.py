"""Rule-based grading chosen by ``data_source``, the same for both engines.

The dispatch follows verl's ``default_compute_score``:

==========================================================  =====================================
``data_source``                                             grader
==========================================================  =====================================
``openai/gsm8k``                                            the number after the last ``####``
``lighteval/MATH``, ``DigitalLearningGmbH/MATH-lighteval``,  the last ``\\boxed{}`` anywhere in the
                                                            response (as verl); equal after
``HuggingFaceH4/MATH-500``, ``math_lvl3to5_8k`` and the      MATH normalisation, or equivalent by
paper's eval sets (``amc``, ``minerva``, ``olympiad_bench``)  math-verify
``math_dapo``, ``math``, ``math_dapo_reasoning``, ``aime*``   DAPO: the last ``Answer: ...`` line
                                                            (else the last ``\\boxed{}``), Minerva
                                                            normalisation; score +1 / -1
``arithmetic``                                              the last ``\\boxed{}``, else the whole
                                                            response, as an integer
==========================================================  =====================================

A ground truth may be a list: the response is correct when any of them matches.
Where a response has several boxes (``\\boxed{-2}`` ... ``\\boxed{1}``), the last one is its
answer and the others do not count, as in verl's graders. GSM8K and DAPO search only the
last 300 characters (verl's ``gsm8k`` and ``math_dapo`` clip there); MATH searches the whole
response (verl's ``math_reward``), so a long solution keeps its final box.
Integer answers compare as integers (``079`` = ``79``, as AIME's answers are shipped
zero-padded), and a comma joins digit groups only in a thousands-separated number
(``32,349``), never across a space (``32, 349`` is two answers).
Differences from verl, on purpose: MATH answers that math-verify proves equal
(``0.5`` for ``\\frac{1}{2}``) count as correct where verl's string check says no, and
zero-padded integers (AIME's ``079``) equal their value where verl's string check says no.

math-verify's own timeouts use ``signal.alarm``, which works only on the main
thread (and TRL and verl call reward functions from worker threads). Here
math-verify runs with its timeouts off, in a helper process that is killed and
restarted when one check takes longer than ``timeout_s``: every check is bounded,
from any thread.

Adapters: :func:`trl_reward` (TRL's reward-function interface) and
:func:`compute_score` (verl's ``custom_reward_function``).
"""

from __future__ import annotations

import multiprocessing
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gmpo_kfp.errors import UserError

GSM8K_SOURCES = ("openai/gsm8k",)
MATH_SOURCES = (
    "lighteval/MATH",
    "DigitalLearningGmbH/MATH-lighteval",
    "HuggingFaceH4/MATH-500",
    "math_lvl3to5_8k",
    "math500",
    "amc",
    "minerva",
    "olympiad_bench",
)
DAPO_SOURCES = ("math_dapo", "math", "math_dapo_reasoning")
ARITHMETIC_SOURCES = ("arithmetic",)
#: GSM8K and DAPO search only the tail of a response for its final answer (as verl does).
TAIL_CHARS = 300
#: A number written with thousands separators, and nothing else.
THOUSANDS = re.compile(r"-?\d{1,3}(,\d{3})+")
DEFAULT_TIMEOUT_S = 10.0
#: The start of a box: ``\boxed{`` or ``\fbox{``.
BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")


class RewardError(UserError, ValueError):
    """No grader for a ``data_source``; the message lists the known ones."""


@dataclass(frozen=True)
class Grade:
    """One graded response: ``score`` is the reward, ``correct`` feeds Pass@1."""

    score: float
    correct: bool
    pred: str | None


# --------------------------------------------------------------------------- extraction


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced; None if none."""
    starts = [m.start() for m in BOX.finditer(text)]
    if not starts:
        return None
    start = text.index("{", starts[-1])
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    return None  # unbalanced: a truncated answer has no box


def gsm8k_answer(text: str) -> str | None:
    """The number after the last ``#### `` in the response's tail, commas and ``$`` removed."""
    found = re.findall(r"#### (-?[0-9.,]+)", text[-TAIL_CHARS:])
    return found[-1].replace(",", "").replace("$", "") if found else None


# --------------------------------------------------------------------------- normalisation

_MATH_DROP = (
    "\\left",
    "\\right",
    "\\!",
    "\\,",
    "\\;",
    "\\:",
    "\\$",
    "$",
    "^\\circ",
    "^{\\circ}",
    "\\%",
    "%",
)


def normalize_math(answer: str) -> str:
    """MATH-style normal form: no spacing, ``\\left``/``\\right``, units or degrees."""
    thousands = THOUSANDS.fullmatch(answer.strip()) is not None  # before spaces go
    s = answer.strip().replace("\n", "").replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\\text\{\s*[a-zA-Z ]*\}$", "", s)  # trailing unit words
    for token in _MATH_DROP:
        s = s.replace(token, "")
    s = re.sub(r"\\(?:text|mbox|mathrm)\{(.*?)\}", r"\1", s)
    s = s.replace(" ", "").rstrip(".")
    if s.startswith("."):
        s = "0" + s
    s = re.sub(r"^([a-zA-Z]\w*)=", "", s)  # "x=3" -> "3"
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)
    if re.fullmatch(r"\d+/\d+", s):
        num, den = s.split("/")
        s = f"\\frac{{{num}}}{{{den}}}"
    if thousands:
        s = s.replace(",", "")
    if re.fullmatch(r"-?\d+\.0+", s):
        s = s.split(".")[0]
    return same_integer_form(s)


def same_integer_form(s: str) -> str:
    """An integer without leading zeros (``079`` -> ``79``); anything else as it is."""
    if re.fullmatch(r"-?\d+", s):
        return str(int(s))
    return s


_MINERVA_DROP_WORDS = (
    "square",
    "ways",
    "integers",
    "dollars",
    "mph",
    "inches",
    "hours",
    "km",
    "units",
    "\\ldots",
    "points",
    "feet",
    "minutes",
    "digits",
    "cents",
    "degrees",
    "cm",
    "pounds",
    "meters",
    "\\dots",
)


def normalize_minerva(answer: str) -> str:
    """The Minerva paper's final-answer normal form, used by DAPO's grader."""
    s = answer.split("=")[-1]
    thousands = THOUSANDS.fullmatch(s.strip()) is not None  # before spaces go
    for before, after in (
        ("an ", ""),
        ("a ", ""),
        (".$", "$"),
        ("\\$", ""),
        ("\\ ", ""),
        (" ", ""),
    ):
        s = s.replace(before, after)
    s = s.replace("mbox", "text").replace(",\\text{and}", ",").replace("\\text{and}", ",")
    for word in _MINERVA_DROP_WORDS:
        s = s.replace(word, "")
    for token in ("\\text{s}", "\\text{.}", "\\text{}", "\\mathrm{th}", "^\\circ", "^{\\circ}"):
        s = s.replace(token, "")
    for token in ("\\;", ",\\!", "{,}", '"'):
        s = s.replace(token, "")
    s = re.sub(r"(.*?)(\$)(.*?)(\$)(.*)", r"$\3$", s)
    for command in ("text", "textbf", "overline"):
        s = re.sub(rf"\\{command}\{{(.*?)\}}", r"\1", s)
    s = re.sub(r"\\boxed\{(.*)\}", r"\1", s)
    s = re.sub(r"(frac)([^{])(.)", r"frac{\2}{\3}", s)
    s = re.sub(r"(sqrt)([^{])", r"sqrt{\2}", s)
    s = s.replace("$", "")
    if thousands:
        s = s.replace(",", "")
    return same_integer_form(s.strip())


# --------------------------------------------------------------------------- math-verify, bounded


def _verify_worker(conn) -> None:  # pragma: no cover - runs in the helper process
    from math_verify import parse, verify

    while True:
        try:
            gold, pred = conn.recv()
        except EOFError:
            return
        try:
            g = parse(f"\\boxed{{{gold}}}", parsing_timeout=None)
            p = parse(pred, parsing_timeout=None)
            ok = bool(g and p and verify(g, p, timeout_seconds=None))
        except Exception:
            ok = False
        conn.send(ok)


class BoundedVerifier:
    """math-verify in a helper process; a check over ``timeout_s`` kills it and counts as wrong."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, worker: Callable = _verify_worker):
        self.timeout_s = timeout_s
        self._worker = worker
        self._lock = threading.Lock()
        self._proc = None
        self._conn = None
        self.timeouts = 0
        self.deaths = 0

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=self._worker, args=(child,), daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(5)
        self._proc = self._conn = None

    def close(self) -> None:
        with self._lock:
            self._kill()

    def __call__(self, gold: str, pred: str) -> bool:
        with self._lock:
            if self._proc is None or not self._proc.is_alive():
                self._kill()
                self._start()
            assert self._conn is not None
            try:
                self._conn.send((gold, pred))
                if self._conn.poll(self.timeout_s):
                    return bool(self._conn.recv())
                self.timeouts += 1
            except (EOFError, OSError):
                # the helper died (before or while reading): this answer scores 0 and
                # the next check starts a new helper
                self.deaths += 1
            self._kill()
            return False


_VERIFIER: BoundedVerifier | None = None


def default_verifier() -> BoundedVerifier:
    global _VERIFIER
    if _VERIFIER is None:
        _VERIFIER = BoundedVerifier()
    return _VERIFIER


# --------------------------------------------------------------------------- graders

Verifier = Callable[[str, str], bool]


def _truths(ground_truth: str | Iterable[str]) -> list[str]:
    if isinstance(ground_truth, str):
        return [ground_truth]
    return [str(g) for g in ground_truth]


def grade_gsm8k(response: str, ground_truth: str | Iterable[str], **_: Any) -> Grade:
    pred = gsm8k_answer(response)
    ok = pred is not None and pred in _truths(ground_truth)
    return Grade(float(ok), ok, pred)


def grade_math(
    response: str, ground_truth: str | Iterable[str], *, verifier: Verifier | None = None
) -> Grade:
    pred = last_boxed(response)
    if pred is None:
        return Grade(0.0, False, None)
    normal = normalize_math(pred)
    truths = _truths(ground_truth)
    ok = any(normalize_math(last_boxed(t) or t) == normal for t in truths)
    if not ok:
        verify = verifier or default_verifier()
        ok = any(verify(last_boxed(t) or t, f"\\boxed{{{pred}}}") for t in truths)
    return Grade(float(ok), ok, pred)


def grade_dapo(response: str, ground_truth: str | Iterable[str], **_: Any) -> Grade:
    tail = response[-TAIL_CHARS:]
    found = re.findall(r"(?i)Answer\s*:\s*([^\n]+)", tail)
    if found:
        pred = normalize_minerva(found[-1])
    else:
        pred = last_boxed(tail[-100:])
        if pred is None:
            return Grade(-1.0, False, None)
    ok = any(
        pred == normalize_minerva(t) if found else same_integer_form(pred) == same_integer_form(t)
        for t in _truths(ground_truth)
    )
    return Grade(1.0 if ok else -1.0, ok, pred)


def grade_arithmetic(response: str, ground_truth: str | Iterable[str], **_: Any) -> Grade:
    boxed = last_boxed(response)
    pred = (boxed if boxed is not None else response).strip()
    ok = re.fullmatch(r"-?\d+", pred) is not None and any(
        int(pred) == int(t) for t in _truths(ground_truth)
    )
    return Grade(float(ok), ok, pred)


def grader_for(data_source: str) -> Callable[..., Grade]:
    """The grading function for ``data_source`` (verl's dispatch, plus ours)."""
    if data_source in GSM8K_SOURCES:
        return grade_gsm8k
    if data_source in MATH_SOURCES:
        return grade_math
    if data_source in DAPO_SOURCES or data_source.startswith("aime"):
        return grade_dapo
    if data_source in ARITHMETIC_SOURCES:
        return grade_arithmetic
    known = ", ".join(GSM8K_SOURCES + MATH_SOURCES + DAPO_SOURCES + ARITHMETIC_SOURCES)
    raise RewardError(f"data_source: no grader for {data_source!r}; use one of {known}, aime*")


def grade(
    data_source: str,
    response: str,
    ground_truth: str | Sequence[str],
    *,
    verifier: Verifier | None = None,
) -> Grade:
    """Grade one response against its ground truth (or any of a list of them)."""
    return grader_for(data_source)(response, ground_truth, verifier=verifier)


# --------------------------------------------------------------------------- engine adapters


def _text(completion: Any) -> str:
    """A TRL completion: plain text, or a conversation whose last message is the answer."""
    if isinstance(completion, str):
        return completion
    return completion[-1]["content"] if completion else ""


def trl_reward(
    prompts: list, completions: list, data_source: list, reward_model: list, **_: Any
) -> list[float]:
    """TRL reward function: the dataset's ``data_source`` and ``reward_model`` columns come in."""
    return [
        grade(src, _text(c), rm["ground_truth"]).score
        for c, src, rm in zip(completions, data_source, reward_model, strict=True)
    ]


trl_reward.__name__ = "score"


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str | Sequence[str],
    extra_info: dict | None = None,
    **_: Any,
) -> dict[str, float]:
    """verl ``custom_reward_function``: ``{"score", "acc"}`` (acc feeds verl's val metrics)."""
    g = grade(data_source, solution_str, ground_truth)
    return {"score": g.score, "acc": float(g.correct)}

"""Progress without a terminal: plain lines on a clock, at each new Pass@1, and at the end."""

from __future__ import annotations

import io

import pytest

from gmpo_kfp import metrics as M
from gmpo_kfp.progress import Progress, duration, every_s


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_lines_every_interval_with_step_reward_pass_rate_and_eta():
    out, clock = io.StringIO(), Clock()
    p = Progress("RL", 100, stream=out, tty=False, every=10, clock=clock)
    clock.now = 5
    p.update(10, {M.SCORE_MEAN: 0.25})
    assert lines(out) == []  # not 10 s yet
    clock.now = 10
    p.update(20, {M.SCORE_MEAN: 0.5})
    assert lines(out) == ["gmpo: RL 20/100 (20%) reward 0.500 | 2.00 step/s, 10 s, ETA 40 s"]
    clock.now = 12
    p.update(24, {"val-core/arithmetic/acc/mean@1": 0.75})  # verl's names: a validation
    assert lines(out)[-1].startswith("gmpo: RL 24/100 (24%) reward 0.500 pass@1 0.750 |")
    clock.now = 13
    p.update(26, {M.PASS_AT_1: 0.75})  # the same Pass@1 again: no line
    assert len(lines(out)) == 2
    clock.now = 50
    p.update(100)
    p.close()  # the last line said where it ended already: no second one
    assert lines(out)[-1] == "gmpo: RL 100/100 (100%) reward 0.500 pass@1 0.750 | 2.00 step/s, 50 s"
    assert lines(out)[-2] != lines(out)[-1]


def test_a_resumed_phase_counts_its_speed_from_where_it_resumed():
    out, clock = io.StringIO(), Clock()
    p = Progress("RL", 2400, initial=2000, stream=out, tty=False, every=0, clock=clock)
    clock.now = 100
    p.update(2100)
    assert "2100/2400 (87%) | 1.00 step/s, 1m40s, ETA 5m00s" in lines(out)[-1]


def test_a_phase_that_stops_at_a_goal_names_it_instead_of_an_eta():
    out, clock = io.StringIO(), Clock()
    p = Progress("warm-up", 2000, stream=out, tty=False, every=0, clock=clock, until="pass@1 0.18")
    clock.now = 10
    p.update(200, {M.PASS_AT_1: 0.11})
    assert lines(out)[-1] == (
        "gmpo: warm-up 200 pass@1 0.110 (until pass@1 0.18, at most 2000 steps)"
        " | 20.00 step/s, 10 s"
    )


def test_slow_phases_and_unknown_totals_read_plainly():
    out, clock = io.StringIO(), Clock()
    p = Progress("evaluate", 0, unit="problem", stream=out, tty=False, every=0, clock=clock)
    clock.now = 30
    p.update(3)
    assert lines(out)[-1] == "gmpo: evaluate 3 | 10.0 s/problem, 30 s"


def test_durations_and_the_interval_setting(monkeypatch):
    assert [duration(x) for x in (4.4, 710, 7500)] == ["4 s", "11m50s", "2h05m"]
    monkeypatch.setenv("GMPO_PROGRESS_EVERY_S", "3")
    assert every_s() == 3.0
    monkeypatch.setenv("GMPO_PROGRESS_EVERY_S", "soon")
    with pytest.raises(ValueError, match="GMPO_PROGRESS_EVERY_S='soon': give a number"):
        every_s()

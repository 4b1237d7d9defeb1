"""The local run's console: each stage with its time and our own lines; all of it in the log."""

from __future__ import annotations

import io

from gmpo_kfp.workflow.run_log import RunLog

KFP_OUTPUT = [
    "\x1b[0m17:57:26.101 - INFO - Executing task '\x1b[96mtrain\x1b[0m'",
    "17:57:26.102 - INFO - Streamed logs:",
    "",
    '    {"executor_input": {"inputs": {"parameterValues": {"preset": "tiny-cpu"}}}}',
    "    gmpo: tiny-cpu 3/3 (100%) reward 0.250 | 2.00 step/s, 2 s",
    "    Some library's chatter",
    "17:57:29.000 - INFO - Task '\x1b[96mtrain\x1b[0m' finished with status \x1b[92mSUCCESS\x1b[0m",
    "17:57:29.001 - INFO - Task 'train' outputs:",
    "    model: Model( name='model', uri='file:///tmp/m' )",
]


class Clock:
    def __init__(self, *times: float):
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0)


def test_the_console_gets_stages_and_our_lines_the_log_gets_everything(tmp_path):
    console = io.StringIO()
    log = RunLog(tmp_path / "run.log", console=console, clock=Clock(10.0, 13.4))
    for line in KFP_OUTPUT:
        log.write(line + "\n")
    log.close()
    assert console.getvalue().splitlines() == [
        "gmpo: stage train started",
        "gmpo: tiny-cpu 3/3 (100%) reward 0.250 | 2.00 step/s, 2 s",
        "gmpo: stage train success (3 s)",
    ]
    assert log.stages == {"train": 3.4000000000000004}
    assert (tmp_path / "run.log").read_text() == "\n".join(KFP_OUTPUT) + "\n"


def test_a_failed_stage_shows_its_last_lines_and_names_the_log(tmp_path):
    console = io.StringIO()
    log = RunLog(tmp_path / "run.log", console=console, clock=Clock(0.0, 5.0))
    failure = "Traceback (most recent call last):\n  File 'x.py'\nValueError: bad\n"
    log.write(f"{KFP_OUTPUT[0]}\n{failure}")
    log.failed()  # kfp.local raises instead of logging the task's end
    log.close()
    shown = console.getvalue().splitlines()
    assert shown[0] == "gmpo: stage train started"
    assert "    ValueError: bad" in shown and "    Traceback (most recent call last):" in shown
    assert shown[-1] == f"gmpo: stage train failed (5 s); full log {tmp_path / 'run.log'}"


def test_verbose_passes_everything_through(tmp_path):
    console = io.StringIO()
    log = RunLog(tmp_path / "run.log", console=console, verbose=True, clock=Clock(0.0, 1.0))
    text = "\n".join(KFP_OUTPUT) + "\n"
    log.write(text)
    log.close()
    assert console.getvalue() == text

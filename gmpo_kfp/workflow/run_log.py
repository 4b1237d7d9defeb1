"""What ``gmpo run --local`` shows while kfp.local runs: a report, with the rest in a log file.

kfp.local prints everything to ``sys.stdout``: its own lines (each task's start and
end, its executor input and outputs as JSON) and each task's merged output. A
:class:`RunLog` stands in that place: every line goes to the log file, and the
console gets each stage as it starts and ends (with its time) and our own lines
(``gmpo: ...``: progress, results). A failed task's last lines go to the console
too, so its traceback is never hidden. ``verbose``: the console gets everything.
"""

from __future__ import annotations

import io
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTED = re.compile(r"Executing task '?([\w.-]+)'?")
ENDED = re.compile(r"Task '?([\w.-]+)'? finished with status (\w+)")
OURS = "gmpo:"
FAILURE_TAIL = 40  # lines of a failed task's output shown on the console


class RunLog(io.TextIOBase):
    """A text stream: the whole of it into ``path``, a report of it onto ``console``."""

    def __init__(
        self,
        path: str | Path,
        *,
        console: IO[str] | None = None,
        verbose: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self.console = console or sys.stderr
        self.verbose = verbose
        self.clock = clock
        self.stages: dict[str, float] = {}  # stage -> seconds, in the order they ended
        self._pending = ""
        self._stage: str | None = None
        self._started = 0.0
        self._tail: list[str] = []  # the running stage's output, for a failure

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._file.write(text)
        self._file.flush()
        if self.verbose:
            self.console.write(text)
            self.console.flush()
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            self._line(ANSI.sub("", line).strip())
        return len(text)

    def _say(self, text: str) -> None:
        if not self.verbose:
            print(text, file=self.console, flush=True)

    def _show_tail(self) -> None:
        """A failed stage's last lines (verbose: they were shown as they came)."""
        if not self.verbose:
            for kept in self._tail[-FAILURE_TAIL:]:
                print(f"    {kept}", file=self.console)

    def _line(self, line: str) -> None:
        if m := STARTED.search(line):
            self._stage, self._started, self._tail = m.group(1), self.clock(), []
            self._say(f"gmpo: stage {self._stage} started")
        elif m := ENDED.search(line):
            stage, status = m.group(1), m.group(2)
            seconds = self.clock() - self._started
            self.stages[stage] = seconds
            if status != "SUCCESS":
                self._show_tail()
            self._say(f"gmpo: stage {stage} {status.lower()} ({seconds:.0f} s)")
            self._stage = None
        elif self._stage is not None:
            self._tail = [*self._tail[-(FAILURE_TAIL - 1) :], line]
            if line.startswith(OURS):
                self._say(line)

    def failed(self) -> None:
        """The run raised (kfp.local raises for a failed task instead of logging its end):
        the running stage's last lines, and that it failed."""
        if self._stage is None:
            return
        seconds = self.clock() - self._started
        self.stages[self._stage] = seconds
        self._show_tail()
        self._say(f"gmpo: stage {self._stage} failed ({seconds:.0f} s); full log {self.path}")
        self._stage = None

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        if self._pending:
            self.write("\n")
        self._file.close()
        super().close()

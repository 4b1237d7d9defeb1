"""Progress of a long phase (warm-up, RL on either engine, evaluation) on stderr.

On a terminal: a tqdm bar. Anywhere else (``gmpo run --local``, a KFP pod's log in the
UI, CI), where a carriage-return bar never reaches a line: a plain line every
``every_s`` seconds (``$GMPO_PROGRESS_EVERY_S``, default 15), whenever a new
validation Pass@1 arrives, and at the end::

    gmpo: RL 120/2400 (5%) reward 0.412 pass@1 0.300 | 3.21 step/s, 37 s, ETA 11m50s
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

from gmpo_kfp import metrics as M
from gmpo_kfp.config import ConfigError

EVERY_ENV = "GMPO_PROGRESS_EVERY_S"
EVERY_S = 15.0
#: metric -> how a line shows it
SHOWN = {M.SCORE_MEAN: "reward", M.PASS_AT_1: "pass@1"}


def duration(seconds: float) -> str:
    """``37 s``, ``11m50s``, ``2h05m``."""
    if not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def every_s() -> float:
    """The seconds between plain lines: ``$GMPO_PROGRESS_EVERY_S``, else 15."""
    raw = os.environ.get(EVERY_ENV, "")
    try:
        value = float(raw) if raw else EVERY_S
    except ValueError:
        raise ConfigError(f"{EVERY_ENV}={raw!r}: give a number of seconds, e.g. 15") from None
    return max(0.0, value)


class Progress:
    """``update(done, metrics)`` as a phase advances, ``close()`` at its end.

    ``what``: the phase's name in each line; ``unit``: ``step`` or ``problem``;
    ``tty``: force the bar (True) or the lines (False); default: whether ``stream``
    is a terminal. ``until``: a phase that ends on a goal rather than at ``total`` (the
    warm-up stops at its Pass@1 target): the lines name the goal, ``total`` as a limit,
    and no percentage or ETA towards a total it seldom reaches.
    """

    def __init__(
        self,
        what: str,
        total: int,
        *,
        initial: int = 0,
        unit: str = "step",
        stream: IO[str] | None = None,
        tty: bool | None = None,
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        until: str | None = None,
    ):
        self.what, self.total, self.unit, self.until = what, total, unit, until
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every = every_s() if every is None else every
        self.clock = clock
        self.start = clock()
        self.initial = self.done = initial
        self.shown: dict[str, float] = {}
        self._last_line = self.start
        self._last_pass: float | None = None
        self._last_done: int | None = None
        self._bar: Any = None
        if self.tty:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total,
                initial=initial,
                desc=what,
                unit=unit,
                file=self.stream,
                mininterval=1.0,
                dynamic_ncols=True,
            )

    def update(self, done: int, metrics: Mapping[str, Any] | None = None) -> None:
        """``done`` units so far; ``metrics``: the latest values (reward, Pass@1)."""
        self.done = done
        metrics = dict(metrics or {})
        if M.PASS_AT_1 not in metrics and (accuracy := M.val_mean(metrics)) is not None:
            metrics[M.PASS_AT_1] = accuracy  # verl's records: val-core/<source>/acc/mean@1
        for key, label in SHOWN.items():
            value = metrics.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.shown[label] = float(value)
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.3f}" for k, v in self.shown.items()}, refresh=False)
            self._bar.n = done
            self._bar.refresh()
            return
        now = self.clock()
        new_pass = self.shown.get("pass@1")
        validated = new_pass is not None and new_pass != self._last_pass
        if validated or now - self._last_line >= self.every:
            self._line(now)

    def line(self) -> str:
        """The plain line for where the phase is now."""
        elapsed = self.clock() - self.start
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else math.inf
        of = f"/{self.total} ({100 * self.done // self.total}%)" if self.total > 0 else ""
        figures = "".join(f" {k} {v:.3f}" for k, v in self.shown.items())
        eta = f", ETA {duration(left)}" if self.total > 0 and self.done < self.total else ""
        if self.until is not None:
            limit = f", at most {self.total} {self.unit}s" if self.total > 0 else ""
            of, eta = "", ""
            figures += f" (until {self.until}{limit})"
        if rate >= 1:
            speed = f"{rate:.2f} {self.unit}/s"
        elif rate > 0:
            speed = f"{1 / rate:.1f} s/{self.unit}"
        else:
            speed = f"0 {self.unit}/s"
        return f"gmpo: {self.what} {self.done}{of}{figures} | {speed}, {duration(elapsed)}{eta}"

    def _line(self, now: float) -> None:
        print(self.line(), file=self.stream, flush=True)
        self._last_line = now
        self._last_pass = self.shown.get("pass@1")
        self._last_done = self.done

    def close(self) -> None:
        """The phase ended: the bar closes, or a last line says where it ended."""
        if self._bar is not None:
            self._bar.n = self.done
            self._bar.close()
            self._bar = None
            return
        if self._last_done != self.done:  # else the last line already said it
            self._line(self.clock())

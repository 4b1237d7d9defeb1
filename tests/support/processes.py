"""Whether a process the test did not start (a child's child) has ended."""

from __future__ import annotations

import os
import signal
import time


def ended(pid: int) -> bool:
    """``pid`` is gone, or a zombie (ended, not yet reaped by whoever adopted it)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(") ", 1)[1].startswith("Z")
    except (ProcessLookupError, FileNotFoundError):
        return True


def ends_within(pid: int, seconds: float) -> bool:
    """Wait up to ``seconds`` for :func:`ended`; a process still running then is
    SIGKILLed (a failing test leaves nothing behind) and the answer is False."""
    deadline = time.monotonic() + seconds
    while not ended(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return False
        time.sleep(0.05)
    return True

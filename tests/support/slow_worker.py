"""A stand-in math-verify helper for the bounded-time tests: it hangs or dies on request."""

from __future__ import annotations

import os
import time


def scripted_worker(conn) -> None:
    """Answers ``gold == pred``; on ``hang`` sleeps, on ``die`` exits without answering
    (as a helper killed mid-request does)."""
    while True:
        try:
            gold, pred = conn.recv()
        except EOFError:
            return
        if pred == "hang":
            time.sleep(3600)
        if pred == "die":
            os._exit(1)
        conn.send(gold == pred)

"""A stand-in math-verify helper for the bounded-time tests: it hangs on request."""

from __future__ import annotations

import time


def hanging_worker(conn) -> None:
    while True:
        try:
            gold, pred = conn.recv()
        except EOFError:
            return
        if pred == "hang":
            time.sleep(3600)
        conn.send(gold == pred)


def dying_worker(conn) -> None:
    """Exits without answering on ``die``, as a helper killed mid-request does."""
    import os

    while True:
        try:
            gold, pred = conn.recv()
        except EOFError:
            return
        if pred == "die":
            os._exit(1)
        conn.send(gold == pred)

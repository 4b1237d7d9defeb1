"""A checkpoint's files sent from a child process, so that the training's own never waits.

The mirror's uploader thread (:mod:`gmpo_kfp.engines.mirror`) hands each checkpoint
folder to one child Python process (``python -m gmpo_kfp.engines.upload_worker``,
started once per mirror), which runs :meth:`gmpo_kfp.storage.Store.upload_dir` there:
the files' SHA-256, the HEADs of the skip check, s3transfer's threads and their
sockets. In the training's process the same work holds the interpreter lock between
system calls, and the training's Python thread (the tiny model's steps, a GPU's kernel
launches) waits for it: the tiny model's RL wall time with mirroring was 1.11x of none
from a thread and 0.99x from this child (medians of four paired rounds, 2026-12-04; see
``benchmarks/storage.py --step-time`` and the README's storage section).

The child runs at Linux's SCHED_IDLE (:func:`gmpo_kfp.engines.mirror.yield_cpu`) and
dies with the thread that started it (``PR_SET_PDEATHSIG``): a killed train step
takes its half-sent upload with it, as it would a thread's.

The protocol, one JSON line each way per folder: ``{"uri", "transfer", "folder",
"prefix"}`` on the child's stdin; ``{"files", "sent"}`` back on its stdout, or
``{"error"}`` (the exception, pickled, base64) with ``"traceback"`` (the child's, as
text), which :meth:`UploadWorker.upload_dir` raises again in the parent. The child's
stderr is the parent's.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import pickle
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

from gmpo_kfp import storage
from gmpo_kfp.transfer import TransferSettings

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class RemoteTraceback(Exception):
    """The child's traceback, chained as the cause of the exception raised again here."""

    def __str__(self) -> str:
        return "\n" + self.args[0]


class UploadWorker:
    """The child process and its pipe; :meth:`upload_dir` sends one folder through it.

    Used by one thread at a time (the mirror's uploader), which also :meth:`close`\\ s it.
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def upload_dir(
        self, uri: str, transfer: TransferSettings | None, folder: Path, prefix: str
    ) -> tuple[dict[str, dict[str, Any]], int]:
        """``open_store(uri, transfer=transfer).upload_dir(folder, prefix)`` in the child;
        returns its files (``{relative path: {size, sha256}}``) and how many it sent."""
        request = {
            "uri": uri,
            "transfer": dataclasses.asdict(transfer) if transfer else None,
            "folder": str(folder),
            "prefix": prefix,
        }
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            code = self.proc.wait()
            raise RuntimeError(
                f"the upload worker (pid {self.proc.pid}) exited with code {code} "
                f"while sending {folder}; its stderr above says why"
            )
        reply = json.loads(line)
        if "error" in reply:
            try:
                exc = pickle.loads(base64.b64decode(reply["error"]))
            except Exception:  # an exception that does not unpickle: its text
                exc = RuntimeError(reply.get("message", "the upload worker failed"))
            raise exc from RemoteTraceback(reply["traceback"])
        return reply["files"], int(reply["sent"])

    def close(self) -> None:
        """End the child (it exits at the end of its input) and wait for it."""
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


def _die_with_parent() -> None:
    """SIGKILL this process when the thread that started it ends (Linux only)."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent ended before the call
        os._exit(1)


def _reply(request: dict[str, Any]) -> dict[str, Any]:
    try:
        transfer = TransferSettings(**request["transfer"]) if request["transfer"] else None
        store = storage.open_store(request["uri"], transfer=transfer)
        files = store.upload_dir(request["folder"], request["prefix"])
        return {"files": files, "sent": store.sent}
    except Exception as exc:
        try:
            error = base64.b64encode(pickle.dumps(exc)).decode()
        except Exception:  # unpicklable: the parent raises its text
            error = ""
        return {"error": error, "message": str(exc), "traceback": traceback.format_exc()}


def main() -> None:
    from gmpo_kfp.engines.mirror import yield_cpu

    _die_with_parent()
    yield_cpu()  # before s3transfer starts its threads: they inherit it
    for line in sys.stdin:
        sys.stdout.write(json.dumps(_reply(json.loads(line))) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

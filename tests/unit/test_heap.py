"""gmpo_kfp.heap: glibc's malloc keeps freed tensor memory, once per process, unless told not to."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from gmpo_kfp import heap

# Free an 8 MiB tensor and ask glibc (mallinfo2) how much freed memory its heap holds.
_STEP = textwrap.dedent(
    """
    import ctypes, torch
    from gmpo_kfp.heap import reuse_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    tuned = reuse_freed_memory()
    x = torch.ones(2 * 1024 * 1024)  # 8 MiB
    del x
    print(tuned, libc.mallinfo2().fordblks)
    """
)


def _run(**env: str) -> tuple[bool, int]:
    clean = {k: v for k, v in os.environ.items() if k not in (*heap.USER_SETTINGS, heap.ENV_SWITCH)}
    out = subprocess.run(
        [sys.executable, "-c", _STEP],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    tuned, faults = out.stdout.split()
    return tuned == "True", int(faults)


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc is Linux's")
def test_a_freed_tensor_stays_in_the_heap_for_the_next_step():
    tuned, kept = _run()
    untuned, kept_untuned = _run(**{heap.ENV_SWITCH: "0"})
    assert tuned and not untuned
    assert kept >= 8 * 1024 * 1024  # kept for reuse
    assert kept_untuned < 8 * 1024 * 1024  # handed back to the kernel (its own mmap)


@pytest.mark.parametrize(
    "env", [{heap.ENV_SWITCH: "0"}, {"MALLOC_MMAP_THRESHOLD_": "131072"}, {"GLIBC_TUNABLES": "x=1"}]
)
def test_the_users_own_malloc_settings_are_left_alone(env):
    tuned, _ = _run(**env)
    assert not tuned


def test_it_is_applied_once_per_process(monkeypatch):
    monkeypatch.setattr(heap, "_applied", True)
    calls = []
    monkeypatch.setattr(heap.ctypes, "CDLL", lambda *a: calls.append(a))
    assert heap.reuse_freed_memory() is True
    assert not calls

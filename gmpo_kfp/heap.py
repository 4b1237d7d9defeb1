"""Freed tensor memory kept for reuse in CPU runs: glibc's malloc, tuned once per process.

glibc gives every allocation above its mmap threshold (128 KiB at first, raised as it
goes, up to 32 MiB) pages of its own and hands them back to the kernel when freed, so
each step of a CPU training loop page-faults and zeroes its activations, gradients and
optimiser temporaries anew: in a VM that is a large part of a small model's step.
:func:`reuse_freed_memory` sets the two thresholds (``M_MMAP_THRESHOLD`` 32 MiB, the
most glibc allows, and ``M_TRIM_THRESHOLD`` 1 GiB) so that freed blocks stay in the heap
and the next step reuses them. PyTorch's CPU tuning guide reaches the same end by
preloading jemalloc or tcmalloc; this needs no library and nothing before start-up.

The cost: the process keeps up to ``M_TRIM_THRESHOLD`` of freed memory instead of
returning it at once. It changes no result (the same values land in the same places).
It is left alone where the user tuned malloc themselves (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES`` or an ``LD_PRELOAD``ed allocator), with
``GMPO_HEAP_REUSE=0``, and off glibc (macOS, musl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

#: glibc's mallopt parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: Allocations up to this size come from the heap (glibc's maximum on 64-bit).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Freed memory the heap keeps before it returns any to the kernel.
TRIM_THRESHOLD = 1024 * 1024 * 1024

#: The switch: ``0`` leaves malloc as it is.
ENV_SWITCH = "GMPO_HEAP_REUSE"
#: Settings that mean the user chose an allocator policy of their own.
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES", "LD_PRELOAD")

_applied: bool | None = None


def reuse_freed_memory() -> bool:
    """Tune glibc's malloc as the module says; True if it is tuned (now or before).

    Idempotent; call it at the start of CPU work, before the tensors that repeat.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(ENV_SWITCH, "1") == "0" or any(os.environ.get(k) for k in USER_SETTINGS):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    _applied = ok
    return ok

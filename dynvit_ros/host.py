# SPDX-License-Identifier: Apache-2.0
"""Process-wide settings of the computer the engine runs on: allocator, threads, CPU identity.

These change or describe the whole process, not one model, so they live apart
from the engine; timings (``latency.profiled``) record them because a latency
measured under one setting does not hold under another.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path
import platform

import torch

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_allocator: dict = {}


def tune_allocator(mmap_threshold: int = 32 << 20, trim_threshold: int = 512 << 20) -> bool:
    """Keep freed tensor memory in the process instead of handing it back to the kernel.

    PyTorch's CPU tensors come straight from malloc. With glibc's defaults,
    every activation above the mmap threshold is a fresh ``mmap`` that is
    page-faulted in and unmapped again each frame; raising the mmap and trim
    thresholds lets the heap reuse those pages (no page faults left per frame,
    a 15-18% faster full-model frame here: ``make bench-allocator``). The cost
    is that RSS stays at its peak. Process-wide; returns False where the C
    library is not glibc, changing nothing.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if not (
        mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))
        and mallopt(_M_TRIM_THRESHOLD, int(trim_threshold))
    ):
        return False
    _allocator.update(mmap_threshold=int(mmap_threshold), trim_threshold=int(trim_threshold))
    return True


def allocator_settings() -> dict:
    """What :func:`tune_allocator` set in this process (empty: the C library's defaults);
    timings taken under one setting do not hold under the other.
    """
    return dict(_allocator)


def set_num_threads(num_threads: int | None) -> int:
    """Set torch's intra-op CPU threads (``None`` or 0: keep the default); return the count."""
    if num_threads:
        torch.set_num_threads(int(num_threads))
    return torch.get_num_threads()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"

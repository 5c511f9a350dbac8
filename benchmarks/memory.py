"""Peak memory of one call, for the benchmark scripts: resident set size (Linux) and tracemalloc's peak.

The peak RSS above the RSS at the start, the high-water mark reset through /proc/self/clear_refs and freed
heap memory handed back with malloc_trim first: it sees what tracemalloc does not (FFmpeg's buffers, torch's
CPU tensors), while tracemalloc's peak counts only Python and NumPy allocations.
"""

from __future__ import annotations

import ctypes
import gc
import time
import tracemalloc
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def measured(fn: Callable[[], T]) -> tuple[float, float, float, T]:
    """(peak RSS MiB above the start, peak traced MiB, seconds, result) of ``fn()``."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset VmHWM to the current RSS
    start_kib = _status_kib("VmRSS")
    tracemalloc.start()
    began = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - began
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return (_status_kib("VmHWM") - start_kib) / 1024, traced / 2**20, seconds, result

"""Timing for the benchmark scripts: the median of repeated calls, robust to a loaded machine's outliers."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def median_seconds(
    fn: Callable[[], Any], repeat: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Median seconds of ``repeat`` calls of ``fn``: wall time, or the process's CPU time with ``clock=
    time.process_time`` (single-threaded work on a machine shared with other jobs, which preempt short calls
    by whole scheduler slices)."""
    runs = []
    for _ in range(repeat):
        start = clock()
        fn()
        runs.append(clock() - start)
    return statistics.median(runs)

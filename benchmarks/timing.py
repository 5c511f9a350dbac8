"""Timing for the benchmark scripts: the median of repeated calls, robust to a loaded machine's outliers."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

CLOCKS: dict[str, Callable[[], float]] = {
    "wall": time.perf_counter,
    # CPU seconds of this process: on a shared machine, time spent waiting for a core is not counted.
    "cpu": time.process_time,
}


def median_seconds(fn: Callable[[], Any], repeat: int, clock: str = "wall") -> float:
    """Median seconds of ``repeat`` calls of ``fn`` by ``clock`` (``"wall"`` or ``"cpu"``)."""
    now = CLOCKS[clock]
    runs = []
    for _ in range(repeat):
        start = now()
        fn()
        runs.append(now() - start)
    return statistics.median(runs)

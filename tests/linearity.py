"""Timing ratio for linear-time claims: the same hostile unit repeated to 10 KB and to 100 KB.

A linear parser takes about 10x as long on the larger page (10-20x here, with cache effects and a shared,
noisy machine), a quadratic one about 100x; the bound the tests use (40x) separates the two with room for
noise. Each size keeps its fastest of several runs, the usual way to time on a busy machine.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

SMALL, LARGE = 10_000, 100_000
MAX_RATIO = 40.0


def _fastest(fn: Callable[[str], object], text: str, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        fn(text)
        best = min(best, time.perf_counter() - started)
    return best


def growth_ratio(fn: Callable[[str], object], unit: str, runs: int = 5) -> float:
    """Time on a 100 KB page of ``unit`` repeated, over the time on a 10 KB one."""
    small = _fastest(fn, unit * (SMALL // len(unit)), runs)
    large = _fastest(fn, unit * (LARGE // len(unit)), runs)
    return large / max(small, 1e-6)

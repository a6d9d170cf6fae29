"""Linear-time claims, measured so that load on the machine cannot fail them and a quadratic parser cannot pass.

The same hostile unit is repeated to a 10 KB and to a 100 KB page: a linear parser takes about 10x as long on the
larger one (up to ~25x when another process shares the cache), a quadratic one about 100x. Three choices keep the measurement honest
on a shared machine:

* CPU time of this process (``time.process_time``), not wall-clock time: other processes' load slows the wall
  clock, not the CPU time the parse itself needs; a sample repeats a fast call until it takes a few milliseconds;
* the sizes are timed alternately and compared as a ratio of medians, so a burst of load falls on both;
* the bound is derived from the measured spread: the ratio may exceed the linear allowance only by as much as the
  runs' own scatter could move it, and the measurement counts only when that bound still lies below the quadratic
  growth (otherwise it is repeated with more runs).

Where the work happens in Python on the text, :func:`work_ratio` counts it instead of timing it (deterministic):
the characters a function copies out of its input by slicing and passes over with ``find``, through a ``str``
subclass that counts them; linear code does about 10x the work on the larger page, quadratic code about 100x.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable

SMALL, LARGE = 10_000, 100_000
QUADRATIC = (LARGE / SMALL) ** 2
# The allowance for linear growth: halfway (geometrically) between linear (10x) and quadratic (100x) growth. 2x linear
# (20x) failed at 24-26x on linear code when a pytest-xdist worker on the other core evicted the larger page's
# working set from the shared cache; a quadratic parse still lands far above.
LINEAR = math.sqrt(QUADRATIC * LARGE / SMALL)



class CountingStr(str):
    """A string that adds the length of every slice taken from it, and of every span ``find`` passes over, to
    ``work[0]``; slices are CountingStr too, so the count follows the text through the code under test."""

    work = [0]

    def __getitem__(self, key):  # type: ignore[override]
        got = str.__getitem__(self, key)
        if isinstance(key, slice):
            CountingStr.work[0] += len(got)
            return CountingStr(got)
        return got

    def find(self, sub, start=None, end=None):  # type: ignore[override]
        frm = 0 if start is None else start
        found = str.find(self, sub, frm, len(self) if end is None else end)
        CountingStr.work[0] += (found if found >= 0 else len(self)) - frm
        return found


def work_ratio(fn: Callable[[str], object], unit: str, suffix: str = "") -> float:
    """Characters counted on a 100 KB page of ``unit`` repeated (then ``suffix``, such as the one closing
    bracket that every opener can reach), over those on a 10 KB one. Only what runs on a CountingStr is counted:
    wrap the function that does the work so that it gets one."""
    counts = []
    for size in (SMALL, LARGE):
        CountingStr.work[0] = 0
        fn(unit * (size // len(unit)) + suffix)
        counts.append(CountingStr.work[0])
    return counts[1] / max(counts[0], 1)


MIN_SAMPLE_S = 0.005  # a sample repeats the call until it takes this long: sub-millisecond timings are mostly jitter


def _cpu_time(fn: Callable[[str], object], text: str, repeat: int) -> float:
    """CPU seconds per call, over ``repeat`` calls."""
    gc.collect()
    started = time.process_time()
    for _ in range(repeat):
        fn(text)
    return max(time.process_time() - started, 1e-9) / repeat


def _repeat_for(fn: Callable[[str], object], text: str) -> int:
    once = _cpu_time(fn, text, 1)
    return max(1, math.ceil(MIN_SAMPLE_S / once))


def _spread(samples: list[float]) -> float:
    """Upper over lower quartile: how far one size's typical run may sit from its median, as a factor."""
    q1, _, q3 = statistics.quantiles(samples, n=4)
    return q3 / q1


def growth(fn: Callable[[str], object], unit: str, runs: int = 5, attempts: int = 3) -> tuple[float, float]:
    """``(ratio, bound)``: the median CPU time on 100 KB of ``unit`` over the median on 10 KB, and the most a linear
    parser may show given the runs' scatter (``LINEAR`` times the quartile spread of each size)."""
    small_text, large_text = unit * (SMALL // len(unit)), unit * (LARGE // len(unit))
    small_repeat, large_repeat = _repeat_for(fn, small_text), _repeat_for(fn, large_text)
    ratio = bound = float("inf")
    for _ in range(attempts):
        small, large = [], []
        for _ in range(runs):
            small.append(_cpu_time(fn, small_text, small_repeat))
            large.append(_cpu_time(fn, large_text, large_repeat))
        ratio = statistics.median(large) / statistics.median(small)
        bound = LINEAR * _spread(small) * _spread(large)
        if bound < QUADRATIC:
            break
        runs *= 2
    return ratio, bound


def assert_linear(fn: Callable[[str], object], unit: str, runs: int = 5) -> None:
    ratio, bound = growth(fn, unit, runs)
    assert bound < QUADRATIC, f"{unit!r}: runs too scattered to tell linear from quadratic (bound {bound:.0f}x)"
    assert ratio < bound, f"{unit!r}: 100 KB took {ratio:.1f}x the CPU time of 10 KB (linear allows {bound:.1f}x here)"

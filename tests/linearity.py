"""Growth ratios for linear-time claims: the same hostile unit repeated to 10 KB and to 100 KB.

:func:`work_ratio` counts work instead of timing it (deterministic, no machine noise): the characters a text
function copies out of its input by slicing and passes over with ``find``, through a ``str`` subclass that
counts them. Linear code does about 10x the work on the larger page, quadratic code about 100x.

:func:`growth_ratio` times it, for parsers whose work happens in C (mwparserfromhell).

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

"""Confidence intervals and paired significance for the leaderboard score, by bootstrap over items.

A 98-question dev set moves by a point per question, so a difference between two systems means little without
its uncertainty. Items are resampled *within each question type* (the final is a mean of per-type means, and a
resample must keep every type present); a paired test resamples the same items for both systems, so what varies
is only which questions are asked, not the systems' answers to them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from krqa.qa.data import QUESTION_TYPES


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile interval."""

    value: float
    low: float
    high: float

    def to_json(self) -> dict[str, float]:
        return {"value": round(self.value, 6), "low": round(self.low, 6), "high": round(self.high, 6)}


def _by_type(scores: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
    return {t: np.asarray(scores[t], dtype=np.float64) for t in QUESTION_TYPES if t in scores and len(scores[t])}


def resample_indices(sizes: Mapping[str, int], n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """``n_boot`` resamples (with replacement) of each type's item positions; shared by paired comparisons."""
    rng = np.random.default_rng(seed)
    return {t: rng.integers(0, n, size=(n_boot, n)) for t, n in sizes.items()}


def final_of(scores: Mapping[str, np.ndarray]) -> float:
    """Leaderboard final: the mean of the per-type means."""
    return float(np.mean([v.mean() for v in scores.values()]))


def _boot_finals(scores: Mapping[str, np.ndarray], idx: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.mean(np.stack([scores[t][idx[t]].mean(axis=1) for t in scores]), axis=0)


def _interval(value: float, samples: np.ndarray, level: float) -> Interval:
    alpha = (1.0 - level) / 2.0
    return Interval(value, float(np.quantile(samples, alpha)), float(np.quantile(samples, 1.0 - alpha)))


def confidence(scores: Mapping[str, Sequence[float]], n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict[str, Interval]:
    """Intervals for each type's mean and for the final (key ``final``), from per-item scores by type."""
    arr = _by_type(scores)
    if not arr:
        raise ValueError("no scored items")
    idx = resample_indices({t: v.size for t, v in arr.items()}, n_boot, seed)
    out = {t: _interval(float(v.mean()), v[idx[t]].mean(axis=1), level) for t, v in arr.items()}
    out["final"] = _interval(final_of(arr), _boot_finals(arr, idx), level)
    return out


def paired(variant: Mapping[str, Sequence[float]], baseline: Mapping[str, Sequence[float]], n_boot: int = 2000,
           level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Difference of finals (variant - baseline) with its interval and a two-sided paired bootstrap p-value.

    Both systems must have scores for the same items in the same order. The p-value is twice the share of
    resamples on the far side of zero (the sign of the difference flips), capped at 1.
    """
    a, b = _by_type(variant), _by_type(baseline)
    if set(a) != set(b) or any(a[t].size != b[t].size for t in a):
        raise ValueError("paired comparison needs scores for the same items in both systems")
    if not a:
        raise ValueError("no scored items")
    idx = resample_indices({t: v.size for t, v in a.items()}, n_boot, seed)
    diffs = _boot_finals(a, idx) - _boot_finals(b, idx)
    delta = final_of(a) - final_of(b)
    flips = float(np.mean(diffs <= 0)) if delta > 0 else float(np.mean(diffs >= 0)) if delta < 0 else 1.0
    ci = _interval(delta, diffs, level)
    return {"delta": round(delta, 6), "low": round(ci.low, 6), "high": round(ci.high, 6), "p_value": round(min(1.0, 2.0 * flips), 6)}

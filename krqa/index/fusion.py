"""Score fusion for hybrid retrieval, pure numpy.

BM25 scores are unbounded and query-dependent while cosine similarities sit in a narrow band, so the two
are normalised per query before a weighted sum. Reciprocal-rank fusion ignores score magnitudes entirely;
it is weighted because plain RRF drags the result toward the weaker retriever when one side is much better.

Inputs are score matrices of shape (candidates, sides); NaN marks a candidate a side did not score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def normalize(scores: np.ndarray, method: str) -> np.ndarray:
    """Per-column min-max to [0, 1] or z-score; a constant column maps to 1 (min-max) or 0 (z-score)."""
    s = np.asarray(scores, dtype=np.float64)
    if method == "minmax":
        lo, hi = np.nanmin(s, axis=0), np.nanmax(s, axis=0)
        span = hi - lo
        return np.where(span > 0, (s - lo) / np.where(span > 0, span, 1.0), 1.0)
    if method == "zscore":
        mean, std = np.nanmean(s, axis=0), np.nanstd(s, axis=0)
        return np.where(std > 0, (s - mean) / np.where(std > 0, std, 1.0), 0.0)
    raise ValueError(f"unknown normalisation {method!r} (expected minmax or zscore)")


def weighted_fusion(scores: np.ndarray, weights: Sequence[float], method: str = "minmax") -> np.ndarray:
    """Weighted sum of normalised columns; a side's missing score counts as that side's lowest normalised score."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != len(weights):
        raise ValueError("scores must be (candidates, sides) with one weight per side")
    if s.shape[0] == 0:
        return np.zeros(0)
    norm = normalize(s, method)
    present = ~np.isnan(s)
    floor = np.array([norm[present[:, j], j].min() if present[:, j].any() else 0.0 for j in range(s.shape[1])])
    norm = np.where(present, norm, floor)
    return norm @ np.asarray(weights, dtype=np.float64)


def ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each row within its column (ties broken by row order); NaN rows get rank inf."""
    s = np.asarray(scores, dtype=np.float64)
    out = np.full(s.shape, np.inf)
    for j in range(s.shape[1]):
        present = np.flatnonzero(~np.isnan(s[:, j]))
        order = present[np.argsort(-s[present, j], kind="stable")]
        out[order, j] = np.arange(1, order.size + 1)
    return out


def weighted_rrf(scores: np.ndarray, weights: Sequence[float], k: float = 60.0) -> np.ndarray:
    """Σ_side w / (k + rank); a side that did not return a candidate adds nothing for it."""
    r = ranks(scores)
    return (np.asarray(weights, dtype=np.float64) / (k + r)).sum(axis=1)


def fuse(scores: np.ndarray, weights: Sequence[float], fusion: str, normalization: str, rrf_k: float) -> np.ndarray:
    if fusion == "rrf":
        return weighted_rrf(scores, weights, rrf_k)
    if fusion == "weighted":
        return weighted_fusion(scores, weights, normalization)
    raise ValueError(f"unknown fusion {fusion!r} (expected weighted or rrf)")

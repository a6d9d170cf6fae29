"""Fusion maths against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from krqa.index.fusion import fuse, normalize, ranks, weighted_fusion, weighted_rrf

NAN = np.nan


def test_minmax_by_hand() -> None:
    s = np.array([[10.0, 0.9], [5.0, 0.5], [0.0, 0.7]])
    np.testing.assert_allclose(normalize(s, "minmax"), [[1.0, 1.0], [0.5, 0.0], [0.0, 0.5]])
    # 0.6*[1, .5, 0] + 0.4*[1, 0, .5] = [1.0, 0.3, 0.2]
    np.testing.assert_allclose(weighted_fusion(s, [0.6, 0.4], "minmax"), [1.0, 0.3, 0.2])


def test_zscore_by_hand() -> None:
    s = np.array([[3.0], [1.0], [2.0]])  # mean 2, population std sqrt(2/3)
    z = np.array([1.0, -1.0, 0.0]) / np.sqrt(2 / 3)
    np.testing.assert_allclose(normalize(s, "zscore")[:, 0], z)
    np.testing.assert_allclose(weighted_fusion(s, [2.0], "zscore"), 2 * z)


def test_constant_column_does_not_divide_by_zero() -> None:
    s = np.array([[4.0, 1.0], [4.0, 3.0]])
    np.testing.assert_allclose(normalize(s, "minmax")[:, 0], [1.0, 1.0])
    np.testing.assert_allclose(normalize(s, "zscore")[:, 0], [0.0, 0.0])


def test_missing_score_takes_the_side_minimum() -> None:
    s = np.array([[10.0, NAN], [0.0, 0.8], [5.0, 0.4]])
    # bm25 minmax [1, 0, .5]; dense minmax over present [-, 1, 0] -> missing = 0
    np.testing.assert_allclose(weighted_fusion(s, [0.5, 0.5], "minmax"), [0.5, 0.5, 0.25])


def test_ranks_and_weighted_rrf_by_hand() -> None:
    s = np.array([[3.0, NAN], [1.0, 0.9], [2.0, 0.1]])
    np.testing.assert_array_equal(ranks(s), [[1, np.inf], [3, 1], [2, 2]])
    got = weighted_rrf(s, [0.7, 0.3], k=10)
    want = [0.7 / 11, 0.7 / 13 + 0.3 / 11, 0.7 / 12 + 0.3 / 12]
    np.testing.assert_allclose(got, want)


def test_rrf_ties_broken_by_row_order() -> None:
    np.testing.assert_array_equal(ranks(np.array([[1.0], [1.0], [2.0]]))[:, 0], [2, 3, 1])


def test_weight_zero_ignores_a_side() -> None:
    s = np.array([[1.0, 0.1], [0.0, 0.9]])
    assert np.argmax(fuse(s, [1.0, 0.0], "weighted", "minmax", 60)) == 0
    assert np.argmax(fuse(s, [0.0, 1.0], "rrf", "minmax", 60)) == 1


def test_bad_shapes_and_names() -> None:
    with pytest.raises(ValueError):
        weighted_fusion(np.ones((2, 2)), [1.0])
    with pytest.raises(ValueError):
        normalize(np.ones((2, 1)), "softmax")
    with pytest.raises(ValueError):
        fuse(np.ones((2, 1)), [1.0], "max", "minmax", 60)
    assert weighted_fusion(np.zeros((0, 2)), [1, 1]).shape == (0,)

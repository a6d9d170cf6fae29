"""The linear-time check itself: it passes a linear scan and fails a quadratic one, whatever else runs here."""

from __future__ import annotations

import pytest

from tests.linearity import assert_linear


def _linear(text: str) -> int:
    return sum(1 for c in text if c == "[")


def _quadratic(text: str) -> int:
    # like a parser that retries each unclosed opener to the end of the page
    return sum(text[i:].count("[") for i in range(0, len(text), 100))


def test_a_linear_scan_passes() -> None:
    assert_linear(_linear, "[[a|")


def test_a_quadratic_scan_fails() -> None:
    with pytest.raises(AssertionError, match=r"100 KB took \d+\.\dx the CPU time of 10 KB"):
        assert_linear(_quadratic, "[[a|")

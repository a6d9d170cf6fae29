"""The reading set (``krqa data reading-set``): distractors of the gold answer's shape from the same article, made
in work linear in the number of questions."""

from __future__ import annotations

import pytest

from krqa.qa import reading
from krqa.qa.data import MC
from krqa.qa.reading import ReadingQuestion, make_items


def _article(n: int) -> list[ReadingQuestion]:
    """n questions about one article, each with its own answer (a year, so every answer has the same shape)."""
    return [ReadingQuestion("한 문서", f"q{i}", f"{i}번째 사건은 몇 년에 일어났는가?", f"{1000 + i}년", f"문단 {i}") for i in range(n)]


def test_items_have_four_distinct_options_with_the_gold_among_them() -> None:
    items = [item for _, item in make_items(_article(20), seed=3)]
    mc = [i for i in items if i.question_type == MC]
    assert len(mc) == 20
    for item in mc:
        assert len(item.options) == 4 and len(set(item.options)) == 4
        assert item.options[int(item.answer) - 1].endswith("년")


def test_reading_set_work_is_linear_in_questions_per_article(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: every question sorted all answers of its article (8,000 questions under one title took over
    5 minutes). Counted in similarity computations: 10x the questions must cost about 10x, not 100x."""
    calls = [0]
    similarity = reading.similarity

    def counted(gold: str, other: str) -> float:
        calls[0] += 1
        return similarity(gold, other)

    monkeypatch.setattr(reading, "similarity", counted)
    work = []
    for n in (300, 3000):
        calls[0] = 0
        assert sum(1 for _, item in make_items(_article(n)) if item.question_type == MC) == n
        work.append(calls[0])
    assert work[1] / work[0] < 15, work

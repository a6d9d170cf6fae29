"""Question-type detection for clients that do not send the type."""

from __future__ import annotations

import pytest

from krqa.qa.data import parse_options
from krqa.qa.qtype import detect_type, with_options


@pytest.mark.parametrize("question,options,expected", [
    ("설날 아침에 먹는 음식은?", ["송편", "떡국"], "선다형"),
    ("설날 아침에 먹는 음식은? \\n 1\\t송편 2\\t떡국 3\\t팥죽", None, "선다형"),
    ("설날의 풍습을 설명하시오.", None, "서술형"),
    ("추석의 유래에 대해 설명해 주세요", None, "서술형"),
    ("한글 창제의 의의를 서술하세요.", None, "서술형"),
    ("탈춤과 판소리를 비교하여 쓰시오.", None, "서술형"),
    ("훈민정음을 만든 왕은?", None, "단답형"),
    ("조선의 첫 번째 수도는 어디인가?", None, "단답형"),
    ("34위에 오른 선수의 이름은?", [], "단답형"),
])
def test_detect_type(question: str, options: list[str] | None, expected: str) -> None:
    assert detect_type(question, options) == expected


def test_with_options_round_trips_through_the_option_parser() -> None:
    options = ["송편", "떡국 2그릇", "팥죽", "오곡밥"]
    stem, parsed = parse_options(with_options("설날 아침에 먹는 음식은?", options))
    assert stem == "설날 아침에 먹는 음식은?" and parsed == options

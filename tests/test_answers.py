"""Answer post-processing: one test per rule, plus the words whose endings look like particles but are not."""

from __future__ import annotations

import logging

import pytest

from krqa.generation.config import GenerationConfig
from krqa.qa.answers import cap_at_sentence, desc_answer, mc_answer, postprocess, short_answer
from krqa.qa.data import QAItem


def _item(qtype: str, question: str = "질문") -> QAItem:
    return QAItem(id="t1", category="문화 지식", domain="풍습", question_type=qtype, topic_keyword="설날", question=question)


MC_ITEM = _item("선다형", "설날 아침에 먹는 음식은? \\n 1\\t송편 2\\t떡국 3\\t팥죽 4\\t떡")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("3", "3"),
        ("3번", "3"),
        ("3.", "3"),
        ("  2\n설명", "2"),
        ("정답: 3", "3"),
        ("정답은 3번입니다.", "3"),
        ("**정답**: 4", "4"),
        ("보기 중 2번이 맞습니다", "2"),
        ("③", "3"),
        ("세 번째 보기입니다", "3"),
        ("떡국입니다", "2"),  # the option text repeated
        ("팥죽", "3"),
        ("떡국이 정답, 1월 1일에 먹는다", "2"),  # option text beats a stray digit
        ("떡", "4"),
        ("정답: 7 아니면 2번", "2"),  # out-of-range numbers are skipped
    ],
)
def test_mc_number_and_option_text(raw: str, expected: str) -> None:
    assert mc_answer(MC_ITEM, raw) == expected


def test_mc_fallbacks_are_valid_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="krqa.qa.answers"):
        assert mc_answer(MC_ITEM, "송펀") == "1"  # closest option text (송편)
        assert "closest option text is 1" in caplog.text
        caplog.clear()
        assert mc_answer(MC_ITEM, "팥쥭을") == "3"
        caplog.clear()
        assert mc_answer(MC_ITEM, "") == "1"
        assert "falling back to 1" in caplog.text
        assert mc_answer(MC_ITEM, "2023년") == "1"


@pytest.mark.parametrize(
    "raw",
    ["", "모르겠다", "%%%", "9999", "0", "①②", "정답: ⑨", "\n\n", "twenty"],
)
def test_mc_always_a_valid_number(raw: str) -> None:
    answer = postprocess(MC_ITEM, raw, GenerationConfig().desc_max_chars)
    assert answer.isdigit() and 1 <= int(answer) <= len(MC_ITEM.options)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("강강술래", "강강술래"),
        ("부정", "부정"),
        ("만 6세", "만 6세"),
        ("세배", "세배"),
        ("한가위", "한가위"),
        ("윷놀이", "윷놀이"),  # ends in 이, not a particle
        ("만 나이", "만 나이"),
        ("민요", "민요"),  # ends in 요, not a particle
        ("직지심체요절", "직지심체요절"),
        ("서울의 봄", "서울의 봄"),
        ("A'REX(인천국제공항철도)", "A'REX(인천국제공항철도)"),
        ("ㄷ-ㄱ-ㄴ-ㄹ", "ㄷ-ㄱ-ㄴ-ㄹ"),
        ("10만 원", "10만 원"),
    ],
)
def test_short_keeps_real_word_endings(raw: str, expected: str) -> None:
    assert short_answer(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  강강술래  ", "강강술래"),  # trimmed
        ("강강술래.", "강강술래"),  # trailing period
        ("강강술래입니다.", "강강술래"),  # copula + ending
        ("부정이다", "부정"),
        ("강강술래예요", "강강술래"),
        ("유치진이에요.", "유치진"),
        ("세배를", "세배"),  # object particle
        ("세배요", "세배"),
        ("정동행성은", "정동행성"),
        ("계절이", "계절"),
        ("복수정당제가", "복수정당제"),
        ('"부정"', "부정"),  # quotes
        ("'한가위'", "한가위"),
        ("「윷놀이」입니다", "윷놀이"),  # brackets, then copula
        ("[세배]", "세배"),
        ("**강강술래**", "강강술래"),  # markdown bold
        ("정답: 만 6세", "만 6세"),  # answer lead
        ("정답은 만 나이입니다. 왜냐하면 한국은", "만 나이"),  # first sentence only
        ("답변:\n강강술래\n설명: 둥글게 돈다", "강강술래"),  # first line after the lead
        ("호조(戶曹)", "호조"),  # hanja gloss
        ("한가위 ( 仲秋 ) 입니다", "한가위"),
    ],
)
def test_short_strips_wrapping(raw: str, expected: str) -> None:
    assert short_answer(raw) == expected


def test_short_never_empties_an_answer() -> None:
    assert short_answer("먹는다") == "먹는다"  # a verb keeps its ending
    assert short_answer("입니다.") != ""
    assert short_answer("") == ""


def test_desc_one_paragraph_without_markup_or_hanja() -> None:
    raw = "## 누리호\n누리호는 **국내 최초**의 발사체(發射體)이다.\n\n- 1호기는 2021년에 발사되었다.\n- 2호기는 2022년에 발사되었다.\n1. 三國 시대와 무관하다.\n<b>끝</b>이다."
    out = desc_answer(raw, 600)
    assert "\n" not in out and "#" not in out and "*" not in out and "<" not in out
    assert "發射體" not in out and "()" not in out and "三國" not in out
    assert out.startswith("누리호는 국내 최초의 발사체이다. 1호기는 2021년에 발사되었다. 2호기는")
    assert "1. " not in out and "- " not in out and "끝 이다." in out


def test_desc_cap_at_sentence_boundary() -> None:
    sentence = "한국의 설날은 음력 정월 초하루로 가족이 모여 차례를 지내는 명절이다. "
    text = sentence * 20
    out = desc_answer(text, 200)
    assert len(out) <= 200 and out.endswith("명절이다.")
    assert desc_answer(text, 10_000) == text.strip()
    assert cap_at_sentence("가나다 " * 100, 50) == ("가나다 " * 100)[:47].strip()  # no sentence end: word boundary


def test_desc_uses_config_limit() -> None:
    text = "조선은 1392년에 세워졌다. " * 100
    assert len(postprocess(_item("서술형"), text, 120)) <= 120


def test_escaped_newlines_in_raw() -> None:
    assert postprocess(_item("단답형"), "강강술래\\n설명", GenerationConfig().desc_max_chars) == "강강술래"


def test_broken_bytes_and_control_characters_removed() -> None:
    assert postprocess(_item("단답형"), "\ufffd강강\x1c술래\u200b\ufffd", GenerationConfig().desc_max_chars) == "강강술래"
    assert postprocess(MC_ITEM, "\ufffd45\ufffd 2", GenerationConfig().desc_max_chars) == "2"


@pytest.mark.parametrize(("raw", "expected"), [("1. 강강술래", "강강술래"), ("- 강강술래", "강강술래"), ("2) 세배를", "세배"), ("3.1 운동", "3.1 운동")])
def test_short_list_marker_removed(raw: str, expected: str) -> None:
    assert short_answer(raw) == expected


@pytest.mark.parametrize("raw", ["...", "(仲秋)", "정답: ...", "「」"])
def test_short_degenerate_answer_keeps_first_raw_word(raw: str) -> None:
    assert postprocess(_item("단답형"), raw, GenerationConfig().desc_max_chars) != ""


@pytest.mark.parametrize(("raw", "expected"), [("## 누리호 발사", "누리호 발사"), ("三國", "三國"), ("**<b>설날</b>**", "설날")])
def test_desc_never_empty(raw: str, expected: str) -> None:
    assert desc_answer(raw, 600) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("설날에는 차례를 지내고 세배를 한다. [질문] 추석에는 무엇을 하나요? [답변] 송편을 빚는다.", "설날에는 차례를 지내고 세배를 한다."),
    ("[답변] 설날에는 떡국을 먹는다.", "설날에는 떡국을 먹는다."),
    ("[답변]\n[참고 문서] 설날은 음력 1월 1일을 이르는 한국의 명절이다.", "설날은 음력 1월 1일을 이르는 한국의 명절이다."),
    ("판소리\n소리꾼\n추임새\n\n[답변]\n판소리는 소리꾼이 고수의 북장단에 맞추어 이야기를 노래하는 공연이다.",
     "판소리는 소리꾼이 고수의 북장단에 맞추어 이야기를 노래하는 공연이다."),
    ("설날\n[답변]\n설날", "설날"),
])
def test_desc_keeps_the_answer_between_prompt_turns(raw: str, expected: str) -> None:
    assert desc_answer(raw, 600) == expected

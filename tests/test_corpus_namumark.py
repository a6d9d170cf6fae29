"""Namumark parser: every markup feature of the issue, and fuzzing for crashes and hangs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from krqa.corpus import namumark
from krqa.corpus.namumark import parse_namumark
from tests.linearity import CountingStr, work_ratio

REMNANTS = ("[[", "]]", "{{", "}}", "'''", "||", "<ref", "[*")


def body(text: str) -> str:
    return "\n".join(t for _, t in parse_namumark(text)[0])


def test_links_plain_and_labelled():
    assert body("[[음력]]과 [[정월|정월 초하루]], [[문서#s-2]], [[https://x.org|바깥]] [[https://y.org]]") == "음력과 정월 초하루, 문서, 바깥"


def test_emphasis_kept_struck_text_dropped():
    assert body("'''굵게''' ''기울임'' __밑줄__ ^^위^^ ,,아래,, ~~취소~~ --지움-- 끝") == "굵게 기울임 밑줄 위 아래 끝"


def test_size_and_colour_blocks_keep_text():
    assert body("{{{+1 큰 글씨}}} {{{-2 작은}}} {{{#red 빨강}}} {{{#ff0000,#00ff00 두 색}}} {{{그대로}}}") == "큰 글씨 작은 빨강 두 색 그대로"


def test_html_block_dropped_wiki_and_folding_bodies_kept():
    text = '{{{#!html <div>숨김</div>}}}\n{{{#!wiki style="color:red"\n위키 본문 {{{+1 안쪽}}}\n}}}\n{{{#!folding [ 펼치기 · 접기 ]\n접힌 본문}}}\n{{{#!syntax python\nprint(1)}}}'
    assert body(text) == "위키 본문 안쪽\n\n접힌 본문"


def test_macros():
    assert body("[include(틀:명절, 인자=값)][목차][tableofcontents]첫 줄[br]둘째 줄 [각주][footnote] [ruby(漢字,ruby=한자)] [1] 유지") == "첫 줄\n둘째 줄 漢字 [1] 유지"


def test_footnotes_kept_apart_with_nested_links():
    sections, notes = parse_namumark("본문이다.[* 설명에 [[링크|보임]]이 있다.] 이어서.[*A 이름 붙은 각주] 끝.[*B]")
    assert sections == [("", "본문이다. 이어서. 끝.")]
    assert notes == ["설명에 보임이 있다.", "이름 붙은 각주"]


def test_tables_become_cells_with_attributes_dropped():
    text = "|| <tablewidth=100%><bgcolor=#eee> 항목 || 내용 ||\n|| <-2> [[떡국]] || '''굵게''' ||\n|| 여러 줄\n셀 || 끝 ||"
    assert body(text) == "항목, 내용\n떡국, 굵게\n여러 줄 셀, 끝"


def test_quotes_lists_rules_comments():
    text = "## 편집자 주석 [[숨김]]\n> 인용문\n>> 겹인용\n * 글머리\n 1. 번호\n a.#3 문자 번호\n----\n보통 문장"
    assert body(text) == "인용문\n겹인용\n글머리\n번호\n문자 번호\n보통 문장"


def test_headings_are_structure():
    sections, _ = parse_namumark("머리\n== 역사 ==\n가\n=== 근대 ===\n나\n==# 접힌 제목 #==\n다\n= 큰 제목 =\n라")
    assert sections == [("", "머리"), ("역사", "가"), ("역사 > 근대", "나"), ("접힌 제목", "다"), ("큰 제목", "라")]


def test_files_and_categories_dropped():
    assert body("앞 [[파일:사진.jpg|width=300&align=center]] [[분류:명절]] [[File:x.png]] 뒤") == "앞 뒤"


def test_escape_and_unbalanced_markup_leave_no_remnants():
    text = "\\[[글자]] [[닫히지 않은 링크 '''굵게 {{{열린 블록 [* 닫히지 않은 각주 ||"
    out = body(text)
    assert not any(r in out for r in REMNANTS)
    assert "닫히지 않은 링크" in out


TOKENS = list("[]{}|'*~-_^,#!=>\\ \n가나a1(+)") + ["[[", "]]", "{{{", "}}}", "[*", "||", "#!wiki", "#!html", "[br]", "'''"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=200).map("".join))
def test_fuzz_markup_soup_never_crashes_and_leaves_no_remnants(text: str):
    sections, notes = parse_namumark(text)
    for part in [t for _, t in sections] + notes:
        assert not any(r in part for r in REMNANTS)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=2000))
def test_fuzz_arbitrary_unicode(text: str):
    parse_namumark(text)


UNITS = ["[[", "[*", "{{{", "~~a", "'''", "[", "[가", "== ", "||", "{{{#!wiki\n", "> [가\n", "[[a|[가", "[include(", "[ruby("]
CLOSERS = ["", "]", "]]", "}}}", "~~", "\n"]


@pytest.mark.parametrize("suffix", CLOSERS)
@pytest.mark.parametrize("unit", UNITS)
def test_inline_work_is_linear_in_page_size(unit: str, suffix: str, monkeypatch: pytest.MonkeyPatch):
    """Every opener pattern, unclosed or with one closer at the very end of the page that each opener can reach:
    the inline pass must copy and search about 10x the characters on 10x the page. Before the fix, "[가" * N +
    "]" sliced up to the one ']' at every '[' (25,000 openers 2.4 s, 100,000 38.5 s)."""
    inline = namumark._inline
    monkeypatch.setattr(namumark, "_inline", lambda s, depth=0: inline(CountingStr(s), depth))
    ratio = work_ratio(parse_namumark, unit, suffix)
    assert ratio < 20, f"{unit!r} + {suffix!r}: 10x the page took {ratio:.1f}x the work"


@pytest.mark.parametrize("unit", ["[가", "[[a|[가"])
def test_one_closer_at_the_end_still_parses(unit: str):
    sections, _ = parse_namumark(unit * 200 + "]")
    assert sections and sections[0][1].count("가") == 200

"""MediaWiki reader: wikitext cleaning feature by feature, page filtering, and damaged dumps."""

from __future__ import annotations

import bz2
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from krqa.corpus.document import Document, Skip
from krqa.corpus.mediawiki import iter_mediawiki
from krqa.corpus.wikidefuse import defuse_wikitext
from krqa.corpus.wikitext import clean_wikitext
from tests.linearity import assert_linear

HEADER = '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/"><siteinfo><base>https://ko.wikipedia.org/wiki/Main</base></siteinfo>\n'


def page(pid: int, title: str, text: str, ns: int = 0, extra: str = "") -> str:
    return f"<page><title>{escape(title)}</title><ns>{ns}</ns><id>{pid}</id>{extra}<revision><text>{escape(text)}</text></revision></page>\n"


def dump(*pages: str, close: bool = True) -> bytes:
    return (HEADER + "".join(pages) + ("</mediawiki>\n" if close else "")).encode("utf-8")


ARTICLE = "'''가나'''는 [[다라|마바]]의 [[사아]]이다. 자차카타파하 문장이 길게 이어진다."


def records(path: Path) -> tuple[list[Document], list[Skip]]:
    out = list(iter_mediawiki(path))
    return [r for r in out if isinstance(r, Document)], [r for r in out if isinstance(r, Skip)]


def body(wikitext: str) -> str:
    sections, _ = clean_wikitext(wikitext)
    return "\n".join(text for _, text in sections)


def test_templates_and_infobox_are_dropped():
    assert body("{{정보상자 명절\n| 이름 = 설날\n| 날짜 = {{음력|1|1}}\n}}\n본문이다.") == "본문이다."


def test_refs_dropped_in_both_forms():
    assert body('가<ref name="a">{{웹 인용|제목=x}}</ref>나<ref name="a" />다') == "가나다"


def test_tables_dropped():
    assert body('앞\n{| class="wikitable"\n! 머리 !! 칸\n|-\n| 값 || 값2\n|}\n뒤') == "앞\n\n뒤"


def test_files_categories_interlanguage_dropped():
    text = body("글 [[파일:x.jpg|섬네일|설명 [[링크]]]] [[File:y.png]] [[분류:명절]] [[en:Seollal]] [[zh-yue:x]] 끝")
    assert text == "글 끝"


def test_links_keep_text_and_comments_go():
    assert body("[[세배]]와 [[차례 (제사)|차례]]<!-- 숨김 -->, [https://x.org 외부] [https://y.org]") == "세배와 차례, 외부"


def test_bold_italic_and_lists():
    assert body("'''굵게''' ''기울임''\n* 항목 하나\n# 번호\n: 들여쓰기") == "굵게 기울임\n항목 하나\n번호\n들여쓰기"


def test_sections_are_structure_and_reference_sections_dropped():
    sections, _ = clean_wikitext("머리말\n== 역사 ==\n가\n=== 근대 ===\n나\n== 각주 ==\n<references />\n* 책 목록\n== 문화 ==\n다")
    assert sections == [("", "머리말"), ("역사", "가"), ("역사 > 근대", "나"), ("문화", "다")]


def test_disambiguation_detected_by_template_and_category():
    assert clean_wikitext("* [[가]]\n{{동음이의}}")[1]
    assert clean_wikitext("* [[가]]\n{{틀:동음이의어}}")[1]
    assert clean_wikitext("* [[가]]\n[[분류:동음이의어 문서]]")[1]
    assert not clean_wikitext("{{정보상자}} 본문")[1]


def test_reader_filters_pages_and_builds_urls(tmp_path: Path):
    path = tmp_path / "d.xml"
    path.write_bytes(dump(
        page(1, "가나", ARTICLE),
        page(2, "넘김", "#넘겨주기 [[가나]]", extra='<redirect title="가나" />'),
        page(3, "넘김2", "#REDIRECT [[가나]]"),
        page(4, "틀:상자", "틀 내용", ns=10),
        page(5, "차례", "* [[가]]\n{{동음이의}}"),
        page(6, "지역 (동음이의)", "* [[가]]"),
    ))
    docs, skips = records(path)
    assert [d.id for d in docs] == ["1"]
    assert docs[0].url == "https://ko.wikipedia.org/wiki/%EA%B0%80%EB%82%98"
    assert docs[0].sections[0][1].startswith("가나는 마바의 사아이다.")
    assert [s.reason for s in skips] == ["redirect", "redirect", "namespace", "disambiguation", "disambiguation"]
    assert not any(s.is_error for s in skips)


def test_bz2_multistream(tmp_path: Path):
    path = tmp_path / "d.xml.bz2"
    data = dump(page(1, "가", ARTICLE), page(2, "나", ARTICLE), page(3, "다", ARTICLE))
    cut = data.index(b"<page><title>\xeb\x82\x98")
    path.write_bytes(bz2.compress(data[:cut]) + bz2.compress(data[cut:]))
    docs, skips = records(path)
    assert [d.title for d in docs] == ["가", "나", "다"] and skips == []


def test_truncated_bz2_keeps_earlier_pages(tmp_path: Path):
    pages = [page(i, f"문서{i}", ARTICLE * 20) for i in range(1, 200)]
    # Multistream layout (as in kowiki-*-multistream.xml.bz2): independent streams of 20 pages each.
    groups = [HEADER + "".join(pages[:20])] + ["".join(pages[i : i + 20]) for i in range(20, 199, 20)] + ["</mediawiki>\n"]
    compressed = b"".join(bz2.compress(g.encode("utf-8")) for g in groups)
    path = tmp_path / "cut.xml.bz2"
    path.write_bytes(compressed[: len(compressed) * 2 // 3])
    docs, skips = records(path)
    assert 0 < len(docs) < 199
    assert [d.id for d in docs] == [str(i) for i in range(1, len(docs) + 1)]
    assert [s.reason for s in skips] == ["truncated"]
    assert "file offset" in skips[0].position


def test_plain_xml_cut_inside_a_page(tmp_path: Path):
    data = dump(page(1, "가", ARTICLE), page(2, "나", ARTICLE))
    path = tmp_path / "cut.xml"
    path.write_bytes(data[: data.index(b"<id>2</id>") + 5])
    docs, skips = records(path)
    assert [d.id for d in docs] == ["1"]
    assert skips[0].reason == "truncated" and skips[0].position.startswith("byte ")


def test_malformed_page_mid_dump_is_skipped_and_reading_continues(tmp_path: Path):
    bad = "<page><title>깨짐</title><ns>0</ns><id>2</id><revision><text>열림 <b></text></revision></page>\n"
    unclosed = "<page><title>안닫힘</title><ns>0</ns><id>3</id><revision><text>x</text></revision>\n"
    path = tmp_path / "bad.xml"
    path.write_bytes(dump(page(1, "가", ARTICLE), bad, unclosed, page(4, "라", ARTICLE)))
    docs, skips = records(path)
    assert [d.id for d in docs] == ["1", "4"]
    assert [s.reason for s in skips] == ["malformed_xml", "malformed_xml"]
    offset = path.read_bytes().index("<page><title>깨짐".encode())
    assert skips[0].position == f"byte {offset}"


def test_invalid_utf8_and_empty_pages(tmp_path: Path):
    broken = page(2, "깨진글자", ARTICLE).encode("utf-8").replace("사아".encode(), b"\xff\xfe")
    data = dump(page(1, "가", ARTICLE)).replace(b"</mediawiki>\n", b"") + broken + (page(3, "빈문서", "") + page(4, "라", ARTICLE) + "</mediawiki>\n").encode()
    path = tmp_path / "enc.xml"
    path.write_bytes(data)
    docs, skips = records(path)
    assert [d.id for d in docs] == ["1", "4"]
    assert [s.reason for s in skips] == ["invalid_utf8", "empty"]
    assert skips[0].position == "byte %d" % data.index(b"\xff")
    assert "page id 3" in skips[1].position


HOSTILE_WIKITEXT = ["[http://a ", "[//a ", "{|\n", "<ref>", "<ref name=a>", "[[a|", "{{a|", "{{{a|", "<span ", "<!--",
                    "<nowiki>", "[[a|<!--", "{{a<!--}}-->", "<b {{a|>", "''[[a|"]


@pytest.mark.parametrize("unit", HOSTILE_WIKITEXT)
def test_parse_time_is_linear_in_page_size(unit: str):
    """mwparserfromhell retries every unclosed opener to the end of the page (quadratic: 100 KB of '[[a|' took
    15 s); defused first, 10x the page costs about 10x the time."""
    assert_linear(clean_wikitext, unit, runs=3)


def test_unclosed_openers_read_as_text_and_closed_ones_still_parse():
    text = "앞 [[가|나]] {{틀|값}} [[열린 링크 <ref>열린 각주 [http://x.org 열린\n{|\n표 {{열린 틀|{{{인자}}}"
    defused = defuse_wikitext(text)
    assert "[[가|나]]" in defused and "{{틀|값}}" in defused and "{{{인자}}}" in defused
    assert "&#91;[열린 링크" in defused and "&lt;ref>열린" in defused and "&#91;http://x.org" in defused
    assert "&#123;|\n표" in defused and "&#123;&#123;열린 틀" in defused
    sections, _ = clean_wikitext(text)
    body = sections[0][1]
    assert body.startswith("앞 나") and "열린 링크" in body and "열린 각주" in body
    normal = "'''가나'''는 [[다라|마바]] {{정보상자|이름=가}}<ref>주석</ref>.\n{|\n|칸\n|}\n<!-- 주석 -->끝 <br> <ref name=a/>"
    for text in (normal, ARTICLE):
        assert defuse_wikitext(text) == text


def test_page_over_the_size_cap_is_cut_and_reported(tmp_path: Path):
    path = tmp_path / "d.xml"
    path.write_bytes(dump(page(1, "긴 문서", "설날은 명절이다. " * 1000), page(2, "가나", ARTICLE)))
    out = list(iter_mediawiki(path, max_page_chars=2000))
    docs = [r for r in out if isinstance(r, Document)]
    skips = [r for r in out if isinstance(r, Skip)]
    assert [d.title for d in docs] == ["긴 문서", "가나"] and len(docs[0].text) <= 2000
    assert [(s.reason, s.is_error) for s in skips] == [("page_truncated", False)] and "page id 1" in skips[0].position

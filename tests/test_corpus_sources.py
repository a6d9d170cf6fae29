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
    assert skips[0].position.startswith("after item 2 (문서2), near file byte")


def test_namuwiki_malformed_json_mid_array(tmp_path: Path):
    data = json.dumps(namu_items(3), ensure_ascii=False).encode("utf-8")
    second = data.index(b"}, {") + 1
    path = tmp_path / "bad.json"
    path.write_bytes(data[:second] + b" }{ " + data[second + 1 :])
    docs, skips = split(iter_namuwiki(path))
    assert [d.title for d in docs] == ["문서1"]
    assert [s.reason for s in skips] == ["malformed_json"]


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
                                 json.dumps({"id": 7, "title": "다", "text": "둘째", "url": "u"}, ensure_ascii=False).encode(), b""]))
    docs, skips = split(iter_jsonl(path))
    assert [(d.id, d.title, d.url) for d in docs] == [("a", "가", ""), ("7", "다", "u")]
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

from __future__ import annotations

import json
from pathlib import Path

import pytest

from krqa.qa.data import QAFormatError, QAItem, load_items, parse_options, save_items, split_alternatives, stats


def _item(**over):
    base = {"id": "1", "input": {"category": "문화 지식", "domain": "예술", "question_type": "단답형", "topic_keyword": "k", "question": "질문?"}, "output": {"answer": "답"}}
    for key, value in over.items():
        if key in base["input"]:
            base["input"][key] = value
        else:
            base[key] = value
    return base


def _write(tmp_path: Path, data) -> Path:
    path = tmp_path / "qa.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "question",
    [
        "전통 놀이는? \\n 1\\t주사위 놀이 2\\t검무 3\\t격구 4\\t영고 5\\t무애무",
        "전통 놀이는?\n1\t주사위 놀이\n2\t검무\n3\t격구\n4\t영고\n5\t무애무",
        "전통 놀이는? 1\\t 주사위 놀이  2\\t 검무  3\\t 격구  4\\t 영고 5\\t무애무\n",
    ],
)
def test_parse_options_escapes_and_real_chars(question: str) -> None:
    stem, options = parse_options(question)
    assert stem == "전통 놀이는?"
    assert options == ["주사위 놀이", "검무", "격구", "영고", "무애무"]


def test_numbers_inside_options_are_not_markers() -> None:
    _, options = parse_options("몇 위? 1\\t 34위 2\\t32위 3\\t18위 4\\t5위")
    assert options == ["34위", "32위", "18위", "5위"]


def test_repeated_number_typo_is_next_option() -> None:
    _, options = parse_options("인맥은? \\n 1\\t 혈연    2\\t 학연     3\\t 지연      3\\t 인연")
    assert options == ["혈연", "학연", "지연", "인연"]


def test_trailing_commas_and_zero_width_removed() -> None:
    _, options = parse_options("보기는? \\n 1\\t 황소, 2\\t마릴린 먼로, 3\\t 절규\u200b 4\\t 모나리자")
    assert options == ["황소", "마릴린 먼로", "절규", "모나리자"]


def test_no_options() -> None:
    assert parse_options("옵션이 없는 질문") == ("옵션이 없는 질문", [])


def test_alternatives() -> None:
    assert split_alternatives("만 6세#만6세# 6세 #") == ["만 6세", "만6세", "6세"]
    item = QAItem(id="x", category="c", domain="d", question_type="단답형", topic_keyword="k", question="q", answer="추석#한가위")
    assert item.alternatives == ["추석", "한가위"]


def test_round_trip_and_predictions(tmp_path: Path) -> None:
    path = _write(tmp_path, [_item(id="a"), _item(id="b", output=None)])
    items = load_items(path)
    assert [i.answer for i in items] == ["답", None]
    out = tmp_path / "pred.json"
    save_items(items, out, answers=["x", "y"])
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert [s["id"] for s in saved] == ["a", "b"] and [s["output"]["answer"] for s in saved] == ["x", "y"]
    assert saved[0]["input"] == _item()["input"]


@pytest.mark.parametrize(
    "data,pattern",
    [
        ("[{", r"invalid JSON at line 1"),
        ('{"a": 1}', r"expected a JSON array"),
        ([_item(question_type="객관식")], r"item '1': input\.question_type: unknown type '객관식'"),
        ([{"id": "7", "input": {"category": "c"}}], r"item '7': input\.domain: missing"),
        ([_item(), _item()], r"item '1': id: duplicate id"),
        ([_item(question_type="선다형", question="보기 없는 선다형")], r"item '1': input\.question: 선다형 question without parseable options"),
        ([_item(question_type="선다형", question="q \\n 1\\ta 2\\tb", output={"answer": "3"})], r"output\.answer: '3' is not an option number 1\.\.2"),
        ([{"input": {}}], r"item '#0': id"),
        ([_item(output={"answer": 3})], r"item '1': output\.answer"),
    ],
)
def test_malformed_files(tmp_path: Path, data, pattern: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(QAFormatError, match=pattern) as err:
        load_items(path)
    assert str(path) in str(err.value) and err.value.exit_code == 2


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(b'[{"id": "\xff"}]')
    with pytest.raises(QAFormatError, match="UTF-8"):
        load_items(path)


def test_require_answers(tmp_path: Path) -> None:
    path = _write(tmp_path, [_item(output=None)])
    with pytest.raises(QAFormatError, match="output.answer: missing"):
        load_items(path, require_answers=True)


def test_bundled_sample_set(repo: Path) -> None:
    items = load_items(repo / "corpus" / "sample_qa.json", require_answers=True)
    s = stats(items, "sample_qa.json")
    assert s["items"] >= 30
    assert all(s["by_type"][t] >= 5 for t in ("선다형", "단답형", "서술형"))
    assert s["mc_options_parsed"] == s["by_type"]["선다형"]
    assert s["short_with_alternatives"] >= 2


@pytest.mark.parametrize("split,counts", [("train", (491, 258, 123, 110)), ("dev", (98, 49, 26, 23)), ("test", (394, 193, 102, 99))])
def test_real_nikl_files(nikl_dir: Path, split: str, counts) -> None:
    items = load_items(nikl_dir / f"korean_culture_qa_V1.0_{split}+.json")
    s = stats(items, split)
    assert (s["items"], s["by_type"]["선다형"], s["by_type"]["단답형"], s["by_type"]["서술형"]) == counts
    assert s["mc_options_parsed"] == counts[1]
    assert set(s["mc_option_counts"]) <= {"4", "5"}

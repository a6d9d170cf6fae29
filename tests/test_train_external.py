"""Converters from CLIcK / SQuAD / NIKL files to the NIKL item schema used for training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from krqa.errors import InputError
from krqa.qa.data import MC, SHORT, QAItem
from krqa.training.config import ExternalSet
from krqa.training.converters import convert_click, convert_squad, load_external
from krqa.training.external import load_nikl, sample, training_targets


def _write(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def click_dir(tmp_path: Path) -> Path:
    root = tmp_path / "click"
    _write(
        root / "Culture" / "Korean History" / "History_X.json",
        [
            {"id": "h1", "paragraph": "", "question": "조선을 세운 사람은?", "choices": ["왕건", "이성계", "주몽", "온조"], "answer": "이성계"},
            {"id": "h2", "paragraph": "고려는 918년에 세워졌다.", "question": "윗글에서 고려가 세워진 해는?", "choices": ["918년", "936년", "1392년", "676년", "1010년"], "answer": "918년"},
            {"id": "h3", "paragraph": "", "question": "정답이 보기에 없다", "choices": ["가", "나", "다", "라"], "answer": "마"},
            {"id": "h4", "paragraph": "", "question": "보기가 셋", "choices": ["가", "나", "다"], "answer": "가"},
        ],
    )
    _write(root / "Language" / "Grammar" / "G.json", [{"id": "g1", "paragraph": "", "question": "다음 중 맞춤법이 옳은 것은?\n두 줄 문제", "choices": ["됬다", "됐다", "됫다", "됏다"], "answer": "됐다"}])
    return root


def test_click_converts_to_numbered_options(click_dir: Path) -> None:
    items = convert_click(click_dir)
    assert [s.item.id.split(":")[-1] for s in items] == ["h1", "h2", "g1"]  # h3 (answer not a choice), h4 (3 choices) dropped
    h1, h2, g1 = (s.item for s in items)
    assert h1.question_type == MC and h1.options == ["왕건", "이성계", "주몽", "온조"] and h1.answer == "2"
    assert h2.options[0] == "918년" and len(h2.options) == 5 and h2.answer == "1"
    assert (h1.category, h1.domain) == ("CLIcK Culture", "Korean History")
    assert g1.domain == "Grammar" and g1.answer == "2" and "두 줄 문제" in g1.stem
    assert items[0].contexts == [] and items[1].contexts[0].text == "고려는 918년에 세워졌다."
    assert convert_click(click_dir, use_context=False)[1].contexts == []


def test_click_items_round_trip_through_nikl_json(click_dir: Path, tmp_path: Path) -> None:
    from krqa.qa.data import load_items, save_items

    items = [s.item for s in convert_click(click_dir)]
    save_items(items, tmp_path / "out.json")
    again = load_items(tmp_path / "out.json", require_answers=True)
    assert [(i.options, i.answer) for i in again] == [(i.options, i.answer) for i in items]


def test_click_bad_file_names_item(tmp_path: Path) -> None:
    _write(tmp_path / "c" / "a.json", [{"id": "x", "question": "q", "answer": "a", "choices": "not a list"}])
    with pytest.raises(InputError, match=r"a\.json: item #0: choices"):
        convert_click(tmp_path / "c")
    with pytest.raises(InputError, match="not found"):
        convert_click(tmp_path / "missing")


def _squad(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "squad.json",
        {
            "version": "KorQuAD_v1.0_dev",
            "data": [
                {
                    "title": "세종_대왕",
                    "paragraphs": [
                        {
                            "context": "세종은 1443년에 훈민정음을 창제하였다.",
                            "qas": [
                                {"id": "q1", "question": "훈민정음이 창제된 해는?", "answers": [{"text": "1443년", "answer_start": 4}, {"text": "1443년", "answer_start": 4}, {"text": "1443", "answer_start": 4}]},
                                {"id": "q2", "question": "답 없음", "answers": [], "is_impossible": True},
                            ],
                        }
                    ],
                }
            ],
        },
    )


def test_squad_short_answers_with_alternatives(tmp_path: Path) -> None:
    items = convert_squad(_squad(tmp_path))
    assert len(items) == 1
    item = items[0].item
    assert item.question_type == SHORT and item.answer == "1443년#1443" and item.topic_keyword == "세종 대왕"
    assert items[0].contexts[0].title == "세종 대왕" and "훈민정음" in items[0].contexts[0].text
    assert training_targets(item, "first") == ["1443년"]
    assert training_targets(item, "each") == ["1443년", "1443"]


def test_training_targets_by_type() -> None:
    mc = QAItem("1", "c", "d", MC, "k", "질문 \\n 1\\t가 2\\t나", answer="2")
    short = QAItem("2", "c", "d", SHORT, "k", "질문", answer="만 6세#만6세#6세")
    desc = QAItem("3", "c", "d", "서술형", "k", "질문", answer="긴 답")
    assert training_targets(mc, "each") == ["2"]
    assert training_targets(mc, "each", "cloze") == ["나"] == training_targets(mc, "first", "text")
    assert training_targets(short, "first") == ["만 6세"]
    assert training_targets(short, "each") == ["만 6세", "만6세", "6세"]
    assert training_targets(desc, "first") == ["긴 답"]
    assert training_targets(QAItem("4", "c", "d", SHORT, "k", "q"), "first") == []


def test_nikl_and_sampling(repo: Path) -> None:
    items = load_external(ExternalSet(kind="nikl", path="x"), repo / "corpus" / "sample_qa.json", seed=1)
    assert len(items) == 32 and items[0].source == "nikl:sample_qa.json"
    a = sample(items, 10, seed=3)
    assert [s.item.id for s in a] == [s.item.id for s in sample(items, 10, seed=3)]
    assert len(a) == 10 and [s.item.id for s in a] == sorted((s.item.id for s in a), key=[s.item.id for s in items].index)
    assert [s.item.id for s in a] != [s.item.id for s in sample(items, 10, seed=4)]


def test_nikl_requires_answers(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.json", [{"id": "a", "input": {"category": "c", "domain": "d", "question_type": "단답형", "topic_keyword": "k", "question": "q"}}])
    with pytest.raises(InputError, match=r"t\.json: item 'a': output\.answer"):
        load_nikl(path)


def test_real_click(shared_data: Path) -> None:
    root = shared_data / "click" / "Dataset"
    if not root.is_dir():
        pytest.skip("CLIcK not in shared data")
    items = convert_click(root)
    assert len(items) > 1900
    assert all(len(s.item.options) in (4, 5) and 1 <= int(s.item.answer) <= len(s.item.options) for s in items)
    assert sum(bool(s.contexts) for s in items) > 300
    assert len({s.item.id for s in items}) == len(items)


def test_real_korquad(shared_data: Path) -> None:
    path = shared_data / "korquad" / "KorQuAD_v1.0_dev_part_a.json"
    if not path.is_file():
        pytest.skip("KorQuAD not in shared data")
    items = convert_squad(path)
    assert len(items) == 2959
    assert all(s.item.answer and s.contexts and s.item.answer.split("#")[0] in s.contexts[0].text for s in items)


def test_real_nikl(nikl_dir: Path) -> None:
    items = load_nikl(nikl_dir / "korean_culture_qa_V1.0_train+.json")
    assert len(items) == 491
    targets = [t for s in items for t in training_targets(s.item, "first")]
    assert len(targets) == 491

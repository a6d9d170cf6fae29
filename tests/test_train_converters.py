"""KMMLU / KoAlpaca / TyDi QA GoldP / ETRI MRC converters on sample files written in each set's own format,
mixing ratios, and the per-source example counts of the stage-1 report."""

from __future__ import annotations

from pathlib import Path

import pytest

from krqa.errors import InputError
from krqa.qa.data import DESC, MC, SHORT
from krqa.training.config import ExternalSet
from krqa.training.converters import convert_etri_mrc, convert_kmmlu, convert_koalpaca, convert_tydiqa, load_external
from krqa.training.external import examples_per_source, load_nikl

DATA = Path(__file__).parent / "data" / "external"


def test_kmmlu_csv_to_numbered_options() -> None:
    items = convert_kmmlu(DATA / "kmmlu")
    assert len(items) == 3  # the row with empty options is dropped
    first = items[0].item
    assert first.question_type == MC and first.options == ["태조", "세종", "성종", "정조"] and first.answer == "2"
    assert first.id == "kmmlu:Korean-History-train:2" and first.domain == "Korean-History" and first.category == "KMMLU"
    assert items[1].item.options[2] == "직지심체요절" and items[1].item.answer == "3"
    assert {s.source for s in items} == {"kmmlu"} and all(s.contexts == [] for s in items)


def test_kmmlu_bad_answer_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text("question,answer,A,B,C,D\n문제,5,가,나,다,라\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"x\.csv: line 2: answer: '5' is not an option number 1-4"):
        convert_kmmlu(bad)
    bad.write_text("question,answer,A,B\n문제,1,가,나\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"x\.csv: line 1: KMMLU header lacks column\(s\) C, D"):
        convert_kmmlu(bad)


def test_koalpaca_jsonl_and_json() -> None:
    v11 = convert_koalpaca(DATA / "koalpaca_v1.1_sample.jsonl")
    assert len(v11) == 2 and v11[0].item.question_type == DESC and v11[0].item.question == "설날에 떡국을 먹는 이유는 무엇인가요?"
    assert v11[0].item.answer.startswith("떡국의 하얀 가래떡은")
    v10 = convert_koalpaca(DATA / "koalpaca_v1.0_sample.json")
    assert v10[0].item.question == "다음 속담의 뜻을 설명하세요.\n가는 말이 고와야 오는 말이 곱다" and v10[1].item.question == "김장은 보통 언제 하나요?"


def test_koalpaca_bad_line(tmp_path: Path) -> None:
    bad = tmp_path / "k.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{broken\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"k\.jsonl: line 2: invalid JSON"):
        convert_koalpaca(bad)


def test_tydiqa_keeps_the_korean_questions() -> None:
    items = convert_tydiqa(DATA / "tydiqa-goldp-v1.1-sample.json")
    assert [s.item.id for s in items] == ["tydiqa:korean-1234567890123456789-0"]
    item = items[0].item
    assert item.question_type == SHORT and item.answer == "2009년" and item.category == "TyDiQA-ko"
    assert items[0].contexts[0].text.startswith("강강술래는") and items[0].source == "tydiqa"
    with pytest.raises(InputError, match=r"no finnish questions"):
        convert_tydiqa(DATA / "tydiqa-goldp-v1.1-sample.json", language="finnish")


def test_etri_mrc_is_squad_format() -> None:
    items = convert_etri_mrc(DATA / "etri_mrc_sample.json")
    assert [s.item.answer for s in items] == ["고수", "2003년#2003"]
    assert items[0].item.id == "etri_mrc:etri-mrc-1" and items[0].item.category == "ETRI MRC" and items[0].contexts
    assert convert_etri_mrc(DATA / "etri_mrc_sample.json", use_context=False)[0].contexts == []


def test_mixing_ratio_and_examples_per_source(repo: Path) -> None:
    train = load_nikl(repo / "corpus" / "sample_qa.json", source="train")
    kmmlu = load_external(ExternalSet(kind="kmmlu", path=str(DATA / "kmmlu"), ratio=0.05), DATA / "kmmlu", 0, n_train=len(train))
    assert len(kmmlu) == 2  # round(0.05 x 32)
    assert len(load_external(ExternalSet(kind="kmmlu", path="x", ratio=1.0, limit=1), DATA / "kmmlu", 0, n_train=32)) == 1
    assert len(load_external(ExternalSet(kind="kmmlu", path="x", ratio=10.0), DATA / "kmmlu", 0, n_train=32)) == 3  # all there is
    etri = load_external(ExternalSet(kind="etri_mrc", path="x"), DATA / "etri_mrc_sample.json", 0)
    counts = examples_per_source(train + kmmlu + etri, "each")
    assert set(counts) == {"train", "kmmlu", "etri_mrc"} and counts["train"] >= len(train)
    assert counts["kmmlu"] == 2 and counts["etri_mrc"] == 3  # 2003년#2003: one example per spelling with 'each'
    assert examples_per_source(etri, "first") == {"etri_mrc": 2}

"""``krqa evaluate`` end to end through the console entry point: JSON output, tables, and id errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from krqa.qa.data import load_items, save_items, split_alternatives

DEV = "korean_culture_qa_V1.0_dev+.json"


def _krqa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "krqa", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture()
def dev_and_preds(nikl_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    gold = nikl_dir / DEV
    items = load_items(gold, require_answers=True)
    answers = [split_alternatives(i.answer or "")[-1] if i.question_type == "단답형" else i.answer or "" for i in items]
    pred = tmp_path / "preds.json"
    save_items(items, pred, answers)
    return gold, pred


def test_evaluate_json_on_dev(dev_and_preds: tuple[Path, Path]) -> None:
    gold, pred = dev_and_preds
    res = _krqa("-q", "evaluate", "--pred", str(pred), "--gold", str(gold), "--no-model-metrics", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["n"] == 98
    assert report["by_type"]["선다형"]["accuracy"] == 1.0
    assert report["by_type"]["단답형"]["exact_match"] == 1.0
    assert report["by_type"]["서술형"]["rouge1"] == pytest.approx(1.0)
    assert report["final"] is None and report["final_available_x100"] == 100.0
    assert set(report["unavailable"]) == {"bertscore", "bleurt"}
    assert report["rouge_tokenizer"]
    assert len(report["by_domain"]) > 5 and report["by_category"]


def test_evaluate_table_names_unavailable_metrics(dev_and_preds: tuple[Path, Path]) -> None:
    gold, pred = dev_and_preds
    res = _krqa("-q", "evaluate", "--pred", str(pred), "--gold", str(gold), "--set", "evaluate.bertscore_model=/no/such/dir",
                "--set", "evaluate.bleurt_model=/no/such/bleurt")
    assert res.returncode == 0, res.stderr
    assert "UNAVAILABLE" in res.stdout and "/no/such/dir" in res.stdout
    assert "relaxed match (not official)" in res.stdout
    assert "by domain" in res.stdout and "NOT" in res.stdout


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def _rec(i: str, qtype: str = "단답형", answer: str = "호조") -> dict:
    return {"id": i, "input": {"category": "c", "domain": "d", "question_type": qtype, "topic_keyword": "k", "question": "q"},
            "output": {"answer": answer}}


@pytest.mark.parametrize(
    ("pred_ids", "fragment"),
    [
        (["1"], "not predicted: '2'"),
        (["1", "2", "9"], "not in"),
        (["1", "1", "2"], "duplicate id"),
    ],
)
def test_id_mismatch_is_one_line_exit_2(tmp_path: Path, pred_ids: list[str], fragment: str) -> None:
    gold = _write(tmp_path / "gold.json", [_rec("1"), _rec("2")])
    pred = _write(tmp_path / "pred.json", [_rec(i) for i in pred_ids])
    res = _krqa("evaluate", "--pred", str(pred), "--gold", str(gold), "--no-model-metrics")
    assert res.returncode == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "pred.json" in lines[0]


def test_question_type_mismatch_is_an_error(tmp_path: Path) -> None:
    gold = _write(tmp_path / "gold.json", [_rec("1")])
    pred = _write(tmp_path / "pred.json", [_rec("1", qtype="서술형")])
    res = _krqa("evaluate", "--pred", str(pred), "--gold", str(gold), "--no-model-metrics", "--json")
    assert res.returncode == 2 and res.stdout == ""
    assert "question_type" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_gold_without_answers_is_an_error(tmp_path: Path) -> None:
    record = _rec("1")
    del record["output"]
    gold = _write(tmp_path / "gold.json", [record])
    pred = _write(tmp_path / "pred.json", [_rec("1")])
    res = _krqa("evaluate", "--pred", str(pred), "--gold", str(gold), "--no-model-metrics")
    assert res.returncode == 2 and "gold.json" in res.stderr and "output.answer" in res.stderr

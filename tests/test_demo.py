from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from krqa.config import load_config
from krqa.demo import COMPARE_PER_TYPE, QUESTIONS_PER_TYPE, check_answer, demo_questions
from krqa.qa.data import QAItem


def _item(qtype: str, question: str = "질문") -> QAItem:
    return QAItem(id="x", category="c", domain="d", question_type=qtype, topic_keyword="k", question=question)


def test_check_answer_rules() -> None:
    mc = _item("선다형", "고르세요 \\n 1\\t가 2\\t나 3\\t다 4\\t라")
    assert check_answer(mc, "3") is None
    assert check_answer(mc, "5") and check_answer(mc, "셋")
    assert check_answer(_item("단답형"), "  ") == "empty answer"
    assert check_answer(_item("단답형"), "강강술래") is None
    assert check_answer(_item("서술형"), "설날") is not None
    assert check_answer(_item("서술형"), "설날은 음력 정월 초하루로 한 해를 시작하는 한국의 가장 큰 명절이며 차례와 세배를 한다.") is None
    assert check_answer(_item("서술형"), "첫 줄이 충분히 길어도 줄바꿈이 있으면 한 문단이 아니므로 거절한다.\n둘째 줄") is not None


def test_demo_questions_cover_every_type(repo: Path) -> None:
    items = demo_questions(load_config(repo / "configs" / "cpu-demo.yaml"))
    assert [i.question_type for i in items] == ["선다형"] * QUESTIONS_PER_TYPE + ["단답형"] * QUESTIONS_PER_TYPE + ["서술형"] * QUESTIONS_PER_TYPE


@pytest.mark.slow
def test_demo_end_to_end_on_tiny_config(repo: Path, tmp_path: Path) -> None:
    """Every step for real (index, model, train --rag, served answers over HTTP), BM25-only to stay fast."""
    sets = [
        f"index.dir={tmp_path / 'index'}",
        "index.dense.backend=none",
        "retrieval.mode=bm25",
        f"train.output_dir={tmp_path / 'run'}",
        "train.stage1.epochs=1",
        "train.stage2.epochs=1",
        "generation.max_new_tokens.서술형=64",
        "generation.desc_min_new_tokens=64",
    ]
    args = [sys.executable, "-m", "krqa", "demo", "--config", str(repo / "configs" / "tiny-test.yaml"), "--json"]
    for s in sets:
        args += ["--set", s]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert [report["steps"][s]["status"] for s in ("index", "model", "train", "serve")] == ["built", "ready", "trained", "answered"]
    assert (tmp_path / "run" / "loss_curve.png").is_file()
    assert report["steps"]["compare"]["status"] == "scored"
    rows = report["comparison"]["rows"]
    assert [r["name"] for r in rows] == ["no-RAG", "RAG"] and all(r["sets"] == {"generation.desc_candidates": 1} for r in rows)
    assert rows[1]["vs_baseline"] is not None and set(rows[1]["scores"]) == {"선다형", "단답형", "서술형", "final"}
    assert all(r["n"] == {"선다형": COMPARE_PER_TYPE, "단답형": COMPARE_PER_TYPE, "서술형": COMPARE_PER_TYPE} for r in rows)
    assert len(report["answers"]) == 3 * QUESTIONS_PER_TYPE
    for ans in report["answers"]:
        assert ans["contexts"] and all(c["source"] in {"kowiki", "namuwiki"} for c in ans["contexts"])
    # The second run reuses what the first built (serve has nothing to reuse: it is left out).
    again = subprocess.run([*args, "--step", "index", "--step", "model", "--step", "train", "--step", "compare"], capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    steps = json.loads(again.stdout)["steps"]
    assert steps["index"]["status"] == "reused" and steps["train"]["status"] == "reused" and "serve" not in steps


def test_a_failing_step_process_reports_one_line_and_exit_2(repo: Path, tmp_path: Path) -> None:
    """A step runs in a process of its own; its bad-input error still reaches the user as the CLI's one line."""
    missing = tmp_path / "no-such-questions.json"
    args = [sys.executable, "-m", "krqa", "demo", "--step", "train", "--config", str(repo / "configs" / "tiny-test.yaml"),
            "--set", f"train.train_file={missing}", "--set", f"train.output_dir={tmp_path / 'run'}"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("krqa: error:") and str(missing) in last and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()

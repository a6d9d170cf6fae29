"""Answer-hit@k on NIKL-format questions: the metric on a hand-made case, the query variants and per-option merge,
and ``krqa eval-retrieval`` on the bundled sample questions against the shared BM25 sample index."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from krqa.index.answer_hits import item_values, normalize_text, rank_items, report, variant_config
from krqa.index.config import QueryConfig
from krqa.index.evaluate import detect_qa_format
from krqa.index.types import Hit
from krqa.qa.data import QAItem, load_items
from krqa.wiring import open_index


class SpaceTokenizer:
    """Whitespace 'morphemes', so the expected recalls can be counted by hand."""

    name = "space"

    def morphs_batch(self, texts: Sequence[str]) -> list[list[str]]:
        return [t.split() for t in texts]


def _item(i: str, qtype: str, question: str, answer: str, category: str = "A") -> QAItem:
    return QAItem(id=i, category=category, domain="d", question_type=qtype, topic_keyword="설날", question=question, answer=answer)


def _hits(*texts: str) -> list[Hit]:
    return [Hit(n, 1.0 - n / 10, f"doc{n}", "", "", t, "", "") for n, t in enumerate(texts)]


ITEMS = [
    _item("s1", "단답형", "나이 셈법은?", "만 나이#세는나이"),
    _item("s2", "단답형", "겨울 준비는?", "김치#김장", category="B"),
    _item("m1", "선다형", "설날 음식은? \\n 1\\t송편 2\\t떡국 3\\t팥죽 4\\t오곡밥", "2"),
    _item("d1", "서술형", "김치를 설명하시오.", "김치, 배추 발효 김치.", category="B"),
]
RANKINGS = [
    _hits("그의 만\n나이는 열 살", "무관"),  # whitespace collapsed: '만 나이' at rank 1
    _hits("배추", "김장을 한다", "김치 김치"),  # '김장' at rank 2 (rank 3 is beyond the deepest k)
    _hits("설날에는 떡국과 송편", "동지 팥죽"),  # gold 떡국 @1; distractors 송편 @1, 팥죽 @2, 오곡밥 never
    _hits("김치 맛", "배추 김치 소금"),  # gold tokens 김치 ×2, 배추, 발효
]


def test_answer_hits_by_hand() -> None:
    records = item_values(ITEMS, RANKINGS, [2, 1], SpaceTokenizer())
    assert [r["value@1"] for r in records] == [1.0, 0.0, 1.0, 0.25]  # 서술형 @1: 김치 once of 4 gold tokens
    assert [r["value@2"] for r in records] == [1.0, 1.0, 1.0, 0.75]  # @2: 김치 twice (clipped at 2) + 배추
    assert records[2]["distractor@1"] == pytest.approx(1 / 3) and records[2]["distractor@2"] == pytest.approx(2 / 3)
    rep = report(records, [1, 2])
    assert rep["questions"] == 4
    assert rep["by_type"]["단답형"] == {"questions": 2, "hit@1": 0.5, "hit@2": 1.0}
    assert rep["by_type"]["선다형"] == {"questions": 1, "hit@1": 1.0, "hit@2": 1.0, "distractor_hit@1": 0.3333, "distractor_hit@2": 0.6667}
    assert rep["by_type"]["서술형"] == {"questions": 1, "rouge1_recall@1": 0.25, "rouge1_recall@2": 0.75}
    assert rep["score@1"] == 0.5625 and rep["score@2"] == 0.9375
    assert rep["by_category"]["A"]["score@1"] == 1.0 and rep["by_category"]["B"]["score@1"] == 0.125
    assert list(rep["by_category"]["B"]["by_type"]) == ["단답형", "서술형"]
    assert rep["by_domain"]["d"]["score@2"] == rep["score@2"]


def test_gold_option_that_no_passage_has_misses() -> None:
    item = _item("m2", "선다형", "설날 음식은? \\n 1\\t송편 2\\t떡국", "1")
    [record] = item_values([item], [_hits("떡국을 먹는다")], [1], SpaceTokenizer())
    assert record["value@1"] == 0.0 and record["distractor@1"] == 1.0


def test_normalize_text() -> None:
    assert normalize_text(" 만\t\n 나이 ") == "만 나이"
    assert normalize_text("\u1100\u1161") == "가"  # conjoining jamo compose under NFC


class FakeRetriever:
    """Returns, per query, one hit per word with the word's length as its score; records what it was asked."""

    modes = ("bm25",)

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def search_batch(self, queries: list[str], top_k: int | None = None, mode: str | None = None) -> list[list[Hit]]:
        self.calls.append(list(queries))
        out = []
        for q in queries:
            words = sorted(set(q.split()), key=lambda w: (-len(w), w))[:top_k]
            out.append([Hit(int.from_bytes(w.encode(), "big"), float(len(w)), w, w, "", w, "", "") for w in words])
        return out


def test_query_variants_and_per_option_merge() -> None:
    fake = FakeRetriever()
    mc = ITEMS[2]
    rank_items(fake, [mc, ITEMS[0]], variant_config(QueryConfig(), "question"), 3, "bm25", batch_size=1)
    assert fake.calls == [["설날 음식은?"], ["나이 셈법은?"]]
    fake.calls.clear()
    per_option = variant_config(QueryConfig(options="per_option"), "topic+question")
    [merged] = rank_items(fake, [mc], per_option, 2, "bm25")
    assert fake.calls == [[f"설날 음식은? {o}" for o in ("송편", "떡국", "팥죽", "오곡밥")]]
    assert [h.text for h in merged] == ["음식은?", "오곡밥"]  # best score over the four sub-queries, cut at depth


@pytest.mark.slow
def test_ranking_matches_what_predict_retrieves(tiny_config, tiny_bm25_index: Path, repo: Path) -> None:
    """The evaluated rankings are the ones ``search_items`` (predict, serve) returns for the same settings."""
    items = load_items(repo / "corpus" / "sample_qa.json", require_answers=True)
    for options in ("none", "per_option"):
        retriever = open_index(tiny_config(f"retrieval.query.options={options}"), tiny_bm25_index)
        ours = rank_items(retriever, items, retriever.cfg.query, 5, "bm25", batch_size=7)
        theirs = retriever.search_items(items, top_k=5, mode="bm25")
        assert [[h.chunk_id for h in hits] for hits in ours] == [[h.chunk_id for h in hits] for hits in theirs]


def test_detect_format(tmp_path: Path, repo: Path) -> None:
    assert detect_qa_format(repo / "corpus" / "sample_qa.json") == "nikl"
    squad = tmp_path / "s.json"
    squad.write_text('\ufeff {"data": []}', encoding="utf-8")
    assert detect_qa_format(squad) == "squad"


def _krqa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "krqa", "-q", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_on_sample_questions(repo: Path, tiny_bm25_index: Path, tmp_path: Path) -> None:
    qa = repo / "corpus" / "sample_qa.json"
    base = ["eval-retrieval", "-c", str(repo / "configs" / "tiny-test.yaml"), "--index", str(tiny_bm25_index), "--qa", str(qa)]
    proc = _krqa(*base, "--top-k", "1,5", "--query", "question,topic+question", "--json")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    items = load_items(qa)
    assert res["format"] == "nikl" and res["questions"] == len(items) and res["rouge_tokenizer"]
    assert set(res["results"]) == {"bm25"} and set(res["results"]["bm25"]) == {"question", "topic+question"}
    for rep in res["results"]["bm25"].values():
        assert {t: e["questions"] for t, e in rep["by_type"].items()} == {
            t: sum(i.question_type == t for i in items) for t in ("선다형", "단답형", "서술형")}
        assert sum(g["questions"] for g in rep["by_domain"].values()) == len(items)
        assert len(rep["items"]) == len(items)
        assert 0 < rep["score@1"] <= rep["score@5"] <= 1
    # The sample corpus was written for these questions: with the topic keyword most short answers are retrieved.
    assert res["results"]["bm25"]["topic+question"]["by_type"]["단답형"]["hit@5"] >= 0.5
    proc = _krqa(*base, "--top-k", "1,5", "--query", "question")
    assert proc.returncode == 0, proc.stderr
    assert "query question" in proc.stdout and "by category" in proc.stdout and "by domain" in proc.stdout
    assert "distractors" in proc.stdout and "ROUGE-1 recall over" in proc.stdout


@pytest.mark.slow
def test_cli_bad_input_is_one_line_exit_2(repo: Path, tiny_bm25_index: Path, tmp_path: Path) -> None:
    base = ["eval-retrieval", "-c", str(repo / "configs" / "tiny-test.yaml"), "--index", str(tiny_bm25_index)]
    unanswered = tmp_path / "test.json"
    unanswered.write_text(json.dumps([{"id": "t1", "input": {"category": "c", "domain": "d", "question_type": "단답형",
                                                                "topic_keyword": "k", "question": "q"}}]), encoding="utf-8")
    squad = tmp_path / "squad.json"
    squad.write_text('{"data": []}', encoding="utf-8")
    for args, fragment in [
        (["--qa", str(unanswered)], "item 't1': output.answer"),
        (["--qa", str(repo / "corpus" / "sample_qa.json"), "--query", "title"], "--query 'title'"),
        (["--qa", str(repo / "corpus" / "sample_qa.json"), "--modes", "dense"], "no dense vectors"),
        (["--qa", str(squad), "--query", "question"], "only for NIKL-format files"),
    ]:
        proc = _krqa(*base, *args)
        assert proc.returncode == 2 and proc.stdout == "", (args, proc.stdout, proc.stderr)
        assert proc.stderr.strip().count("\n") == 0 and fragment in proc.stderr, (args, proc.stderr)

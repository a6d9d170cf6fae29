"""Retriever behaviour: modes, bad input, per-document caps, item queries, batch = single, CLI commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from krqa.config import KrqaConfig
from krqa.errors import InputError
from krqa.index.build import build_index
from krqa.index.config import QueryConfig
from krqa.index.evaluate import score_rankings
from krqa.index.query import build_queries
from krqa.index.retriever import IndexRetriever
from krqa.index.types import Hit
from krqa.wiring import open_index
from krqa.qa.data import QAItem
from tests.test_index_build import small_config, write_corpus

MC = QAItem(id="mc1", category="c", domain="d", question_type="선다형", topic_keyword="설날",
            question="설날 아침에 먹는 음식은? \\n 1\\t송편 2\\t떡국 3\\t팥죽")


@pytest.fixture(scope="module")
def env(tiny_config, repo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[KrqaConfig, IndexRetriever, Path]:
    root = tmp_path_factory.mktemp("retrieval")
    corpus = write_corpus(root / "corpus.jsonl")
    cfg = small_config(tiny_config, root / "index", "retrieval.candidates=20", "retrieval.max_top_k=50")
    build_index(cfg.corpus, cfg.index, corpus_paths=[corpus])
    return cfg, open_index(cfg), root


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_modes_find_the_right_document(env, mode: str) -> None:
    _, r, _ = env
    hits = r.search("훈민정음을 창제한 조선의 왕은 누구인가?", top_k=3, mode=mode)
    assert hits[0].title == "세종대왕" and isinstance(hits[0], Hit)
    assert len({h.chunk_id for h in hits}) == len(hits)  # no chunk twice
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert set(hits[0].to_json()) == {"chunk_id", "score", "doc_id", "title", "section", "text", "source", "url"}


def test_batch_equals_single(env) -> None:
    _, r, _ = env
    queries = ["거북선", "송편을 빚는 명절", "경주의 절"]
    batch = r.search_batch(queries, top_k=4, mode="hybrid")
    for q, hits in zip(queries, batch, strict=True):
        single = r.search(q, top_k=4, mode="hybrid")
        assert [h.chunk_id for h in hits] == [h.chunk_id for h in single]
    assert r.search_batch([], top_k=3) == []


@pytest.mark.parametrize(("query", "top_k", "mode", "match"), [
    ("", 3, None, "empty"),
    ("   ", 3, None, "empty"),
    ("?!… ~~", 3, None, "no letters or digits"),
    ("세종", 0, None, "top_k 0: must be an integer from 1 to 50"),
    ("세종", -1, None, "top_k -1"),
    ("세종", 10**6, None, "top_k 1000000"),
    ("세종", 2.5, None, "top_k 2.5"),
    ("세종", 3, "fuzzy", "mode 'fuzzy'"),
])
def test_bad_input_is_input_error(env, query, top_k, mode, match) -> None:
    _, r, _ = env
    with pytest.raises(InputError, match=match):
        r.search(query, top_k=top_k, mode=mode)


def test_bad_query_in_batch_named_by_position(env) -> None:
    _, r, _ = env
    with pytest.raises(InputError, match="query #1: empty"):
        r.search_batch(["세종", ""])


def test_unknown_words_give_no_bm25_hits_but_dense_still_answers(env) -> None:
    _, r, _ = env
    assert r.search("ㅋㅋㅋ zzqx", top_k=3, mode="bm25") == []
    assert len(r.search("ㅋㅋㅋ zzqx", top_k=3, mode="dense")) == 3


def test_max_per_doc(env) -> None:
    cfg, _, root = env
    query = "세종대왕 훈민정음 집현전 측우기 해시계"
    uncapped = open_index(cfg).search(query, top_k=6, mode="bm25")
    assert sum(h.doc_id == "d0" for h in uncapped) >= 2
    capped = open_index(cfg.model_copy(update={"retrieval": cfg.retrieval.model_copy(update={"max_per_doc": 1})})).search(query, top_k=6, mode="bm25")
    docs = [h.doc_id for h in capped]
    assert len(docs) == len(set(docs)) and docs[0] == "d0"


def test_query_builder() -> None:
    assert build_queries(MC, QueryConfig(options="append")) == ["설날 아침에 먹는 음식은? 송편 떡국 팥죽"]
    assert build_queries(MC, QueryConfig(options="per_option")) == ["설날 아침에 먹는 음식은? 송편", "설날 아침에 먹는 음식은? 떡국", "설날 아침에 먹는 음식은? 팥죽"]
    assert build_queries(MC, QueryConfig(options="none")) == ["설날 아침에 먹는 음식은?"]
    short = QAItem(id="s", category="c", domain="d", question_type="단답형", topic_keyword="훈민정음", question="이 문자를 만든 왕은?\\n")
    assert build_queries(short, QueryConfig()) == ["이 문자를 만든 왕은? 훈민정음"]
    assert build_queries(short, QueryConfig(use_topic_keyword=False)) == ["이 문자를 만든 왕은?"]


def test_search_items_per_option_merges_and_dedupes(env) -> None:
    cfg, _, _ = env
    r = open_index(cfg.model_copy(update={"retrieval": cfg.retrieval.model_copy(update={"query": QueryConfig(options="per_option")})}))
    hits = r.search_items([MC], top_k=4, mode="bm25")[0]
    ids = [h.chunk_id for h in hits]
    assert len(ids) == len(set(ids)) and hits[0].title == "설날"
    bad = QAItem(id="b1", category="c", domain="d", question_type="서술형", topic_keyword="", question="???")
    with pytest.raises(InputError, match="item 'b1'"):
        r.search_items([bad])


def test_bm25_only_index_refuses_dense(tiny_config, repo: Path, env) -> None:
    _, _, root = env
    cfg = small_config(tiny_config, root / "bm25only", "index.dense.backend=none", "retrieval.mode=bm25")
    build_index(cfg.corpus, cfg.index, corpus_paths=[root / "corpus.jsonl"])
    r = open_index(cfg)
    assert r.modes == ("bm25",) and r.search("김장", top_k=1)[0].title == "김치"
    with pytest.raises(InputError, match="no dense vectors"):
        r.search("김장", mode="hybrid")


def _hit(doc_id: str, text: str) -> Hit:
    return Hit(0, 1.0, doc_id, "", "", text, "", "")


def test_score_rankings_by_hand() -> None:
    questions = [("q1", ["떡국"], "A#0"), ("q2", ["송편"], "B#1"), ("q3", ["x"], "C#0")]
    rankings = [
        [_hit("A#0", "떡국을 먹는다"), _hit("A#0", "…"), _hit("B#0", "")],  # rank 1
        [_hit("B#0", ""), _hit("B#0", ""), _hit("A#1", "송편"), _hit("B#1", "")],  # distinct docs B#0, A#1, B#1 -> rank 3
        [_hit("D#0", "")],  # miss
    ]
    m = score_rankings(rankings, questions, [1, 3])
    assert m["doc_recall@1"] == round(1 / 3, 4) and m["doc_recall@3"] == round(2 / 3, 4)
    assert m["article_recall@1"] == round(2 / 3, 4)  # q2's first hit is article B
    assert m["answer_recall@1"] == round(1 / 3, 4) and m["answer_recall@3"] == round(2 / 3, 4)
    assert m["mrr"] == round((1 + 1 / 3) / 3, 4)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "krqa", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_build_search_eval(repo: Path, tmp_path: Path) -> None:
    squad = {"data": [
        {"title": "세종", "paragraphs": [{"context": "세종대왕은 조선의 제4대 왕으로 훈민정음을 창제하였다.", "qas": [{"id": "1", "question": "훈민정음을 창제한 왕은?", "answers": [{"text": "세종대왕", "answer_start": 0}]}]}]},
        {"title": "김치", "paragraphs": [{"context": "김치는 배추를 소금에 절여 양념한 발효 음식이다.", "qas": [{"id": "2", "question": "배추를 절여 만드는 발효 음식은?", "answers": [{"text": "김치", "answer_start": 0}]}]}]},
    ]}
    qa = tmp_path / "qa.json"
    qa.write_text(json.dumps(squad, ensure_ascii=False), encoding="utf-8")
    cfg = ["-c", str(repo / "configs" / "tiny-test.yaml"), "--set", "corpus.chunking.min_chars=10"]
    out = tmp_path / "idx"
    proc = _cli("-q", "build-index", *cfg, "--corpus", str(qa), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["chunk_count"] == 2
    proc = _cli("-q", "search", "훈민정음", *cfg, "--index", str(out), "--mode", "bm25", "--top-k", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["hits"][0]["title"] == "세종"
    proc = _cli("-q", "search", "훈민정음", *cfg, "--index", str(out))
    assert proc.returncode == 0 and "세종" in proc.stdout
    proc = _cli("-q", "search", "?!", *cfg, "--index", str(out))
    assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.strip().count("\n") == 0 and "no letters or digits" in proc.stderr
    proc = _cli("-q", "search", "세종", *cfg, "--index", str(out), "--top-k", "0")
    assert proc.returncode == 2 and "top_k 0" in proc.stderr
    proc = _cli("-q", "eval-retrieval", *cfg, "--index", str(out), "--qa", str(qa), "--top-k", "1,2", "--json")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["questions"] == 2 and res["gold_docs_missing_from_index"] == 0
    assert set(res["modes"]) == {"bm25", "dense", "hybrid"} and res["modes"]["bm25"]["doc_recall@1"] == 1.0
    proc = _cli("-q", "search", "세종", *cfg, "--index", str(tmp_path / "none"))
    assert proc.returncode == 2 and "index not found" in proc.stderr

"""BM25: Kiwi term extraction, score equality with rank-bm25, and memory-mapped save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rank_bm25 import BM25L, BM25Okapi, BM25Plus

from krqa.index.bm25 import BM25Index, top_positive
from krqa.index.config import BM25Config
from krqa.index.tokenize import KiwiTokenizer, has_content

TEXTS = [
    "세종대왕은 조선의 제4대 왕으로 훈민정음을 창제하였다.",
    "이순신은 임진왜란 때 거북선으로 한산도 대첩에서 승리하였다.",
    "김치는 배추를 소금에 절여 고춧가루와 마늘로 양념한 발효 음식이다.",
    "설날 아침에는 차례를 지내고 떡국을 먹으며 세배를 한다.",
    "추석은 한가위라고도 하며 송편을 빚고 성묘를 한다.",
    "한글날은 훈민정음 반포를 기념하는 국경일이다.",
    "경복궁은 조선 왕조의 법궁으로 서울 종로구에 있다.",
    "불국사는 경주에 있는 신라 시대의 절로 석가탑과 다보탑이 있다.",
]
QUERIES = ["훈민정음을 창제한 왕", "조선 왕조 궁궐", "추석에 먹는 송편", "신라 경주 절 석가탑 다보탑", "떡국 떡국 설날"]


@pytest.fixture(scope="module")
def tokens() -> list[list[str]]:
    return KiwiTokenizer(BM25Config()).tokenize(TEXTS)


def test_tokenizer_keeps_configured_tags_and_strips_suffixes() -> None:
    tok = KiwiTokenizer(BM25Config())
    terms = tok("추웠지만 걸어서 Seoul에 갔다")
    assert "춥" in terms and "걷" in terms  # VA-I / VV-I: the -I suffix does not hide them from VA/VV
    assert "seoul" in terms  # SL lower-cased
    assert not {"지만", "어서", "에", "었"} & set(terms)  # endings and particles are not terms
    lemma = KiwiTokenizer(BM25Config(lemma=True, stopwords=["가"]))("추웠지만 걸어서 갔다")
    assert "춥다" in lemma and "걷다" in lemma and "가" not in lemma and "가다" in lemma
    assert KiwiTokenizer(BM25Config(tags=["NNG"], bigrams=False))("세종대왕은 훈민정음을 창제하였다") == ["대왕", "창제"]
    assert KiwiTokenizer(BM25Config(tags=["NNG", "NNP"]))("세종대왕은 훈민정음을 창제하였다") == ["세종", "대왕", "훈민정음", "창제", "세종 대왕", "대왕 훈민정음", "훈민정음 창제"]
    assert tok.tokenize([]) == [] and tok.tokenize(["!!!"]) == [[]]


def test_has_content() -> None:
    assert has_content("왕") and has_content("42") and not has_content(" ?!… ") and not has_content("")


@pytest.mark.parametrize(("k1", "b", "delta"), [(1.2, 0.75, 0.5), (1.5, 0.3, 1.0)])
def test_bm25plus_equals_rank_bm25_plus(tokens, k1, b, delta) -> None:
    ours = BM25Index.build(tokens, BM25Config(method="bm25+", k1=k1, b=b, delta=delta))
    ref = BM25Plus(tokens, k1=k1, b=b, delta=delta)
    for q in QUERIES:
        terms = [t for t in ours.tokenizer(q) if t in ours.vocab]
        ids = ours.term_ids(terms)
        # Both give every document delta·idf for each query term; ours removes that common floor (and adds it back here).
        np.testing.assert_allclose(ours.scores(ids) + ours._baseline[ids].sum(), ref.get_scores(terms), rtol=1e-5)


@pytest.mark.parametrize(("k1", "b", "delta"), [(1.2, 0.75, 0.5), (1.5, 0.3, 1.0)])
def test_bm25l_equals_rank_bm25_l_where_tf_is_one(tokens, k1, b, delta) -> None:
    # rank-bm25's BM25L multiplies the BM25L term weight by tf once more and gives absent terms 0, so the two
    # agree exactly on single-term queries whose term occurs at most once per document.
    ours = BM25Index.build(tokens, BM25Config(method="bm25l", k1=k1, b=b, delta=delta))
    ref = BM25L(tokens, k1=k1, b=b, delta=delta)
    checked = 0
    for term, tid in ours.vocab.to_dict().items():
        if max(doc.count(term) for doc in tokens) != 1:
            continue
        matches = np.array([term in doc for doc in tokens])
        want = ref.get_scores([term])
        np.testing.assert_allclose(ours.scores([tid]) + matches * ours._baseline[tid], want, rtol=1e-5, atol=1e-7)
        assert (want[~matches] == 0).all()
        checked += 1
    assert checked > 20


@pytest.mark.parametrize(("k1", "b"), [(1.2, 0.75), (0.9, 0.4)])
def test_robertson_equals_okapi_up_to_k1_plus_1(tokens, k1, b) -> None:
    # No term of this corpus is in more than half the documents, so Okapi's negative-idf floor never applies.
    ours = BM25Index.build(tokens, BM25Config(method="robertson", k1=k1, b=b))
    ref = BM25Okapi(tokens, k1=k1, b=b)
    for q in QUERIES:
        terms = ours.tokenizer(q)
        np.testing.assert_allclose(ours.scores(ours.term_ids(terms)) * (k1 + 1), ref.get_scores(terms), rtol=1e-5, atol=1e-6)


def test_unknown_terms_score_zero_and_top_skips_them(tokens) -> None:
    ours = BM25Index.build(tokens, BM25Config(method="bm25+"))
    ids, scores, full = ours.top("우주 정거장", 5)
    assert ids.size == 0 and not full.any()
    ids, scores, _ = ours.top("훈민정음", 5)
    assert set(ids.tolist()) == {0, 5} and (np.diff(scores) <= 0).all()


def test_save_load_mmap_same_scores(tokens, tmp_path: Path) -> None:
    cfg = BM25Config(method="lucene")
    built = BM25Index.build(tokens, cfg)
    built.save(tmp_path / "bm25")
    loaded = BM25Index.load(tmp_path / "bm25", cfg)
    assert isinstance(loaded.data, np.memmap) and isinstance(loaded.vocab.offsets, np.memmap)
    for q in QUERIES:
        np.testing.assert_array_equal(built.top(q, 3)[0], loaded.top(q, 3)[0])
        np.testing.assert_allclose(built.top(q, 3)[1], loaded.top(q, 3)[1])


def test_top_positive() -> None:
    s = np.array([0.0, 3.0, 1.0, 0.0, 2.0])
    assert top_positive(s, 2).tolist() == [1, 4]
    assert top_positive(s, 10).tolist() == [1, 4, 2]
    assert top_positive(s, 0).size == 0

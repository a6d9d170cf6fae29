"""The sharded, bounded-memory BM25 build equals bm25s's in-memory build, value for value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from krqa.corpus.pipeline import build_chunks
from krqa.corpus.store import load_chunks
from krqa.index import bm25_build
from krqa.index.bm25 import BM25Index
from krqa.index.bm25_build import merge_shards, shard_ranges, tokenize_shard, write_shard
from krqa.index.build import build_index
from krqa.index.config import BM25Config
from krqa.index.tokenize import KiwiTokenizer

QUERIES = ["설날은 음력 몇 월 며칠인가", "판소리 고수 북장단", "김장 배추 양념", "Seoul 2002 월드컵", "없는낱말"]


@pytest.fixture(scope="module")
def texts(tiny_config, repo: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    out = tmp_path_factory.mktemp("chunks") / "store"
    build_chunks(tiny_config().corpus, out, workers=1)
    return list(load_chunks(out)["index_text"])


def _arrays(index: BM25Index) -> dict[str, np.ndarray]:
    return {k: np.asarray(index.model.scores[k]) for k in ("data", "indices", "indptr")}


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire", "bm25l", "bm25+"])
def test_sharded_merge_equals_in_memory_build(texts: list[str], tmp_path: Path, method: str) -> None:
    cfg = BM25Config(method=method)
    reference_dir = tmp_path / "ref"
    BM25Index.build(KiwiTokenizer(cfg).tokenize(texts), cfg).save(reference_dir)
    reference = BM25Index.load(reference_dir, cfg)
    paths = []
    for i, (a, b) in enumerate(shard_ranges(len(texts), 37)):  # 9 shards of uneven vocabularies
        paths.append(tmp_path / f"shard-{i}.npz")
        write_shard(tokenize_shard(texts[a:b], cfg), paths[-1])
    out = tmp_path / "merged"
    out.mkdir()
    assert merge_shards(paths, cfg, out, block_entries=500) == len(texts)  # about 30 blocks of terms
    merged = BM25Index.load(out, cfg)
    assert merged.vocab == reference.vocab and merged.num_docs == reference.num_docs
    for name, array in _arrays(reference).items():
        got = _arrays(merged)[name]
        assert got.dtype == array.dtype and np.array_equal(got, array), name
    for query in QUERIES:
        ids = merged.term_ids(merged.tokenizer(query))
        assert np.array_equal(merged.scores(ids), reference.scores(ids))
    assert not (out / "runs").exists()


def test_interrupted_merge_resumes_without_retokenizing(tiny_config, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "index"
    cfg = tiny_config(f"index.dir={out}", "index.dense.backend=none", "index.bm25.shard_chunks=100")

    def crash(*args, **kwargs):
        raise RuntimeError("injected crash in the merge")

    monkeypatch.setattr(bm25_build, "merge_shards", crash)
    with pytest.raises(RuntimeError, match="injected crash"):
        build_index(cfg.corpus, cfg.index, workers=1)
    shards = sorted((tmp_path / "index.partial" / "bm25_shards").glob("shard-*.npz"))
    assert len(shards) == 4 and not out.exists()
    monkeypatch.undo()
    calls = []
    monkeypatch.setattr(bm25_build, "tokenize_shard", lambda *a, **k: calls.append(a) or {})
    manifest = build_index(cfg.corpus, cfg.index, resume=True, workers=1)
    assert calls == []  # every shard came from the interrupted run
    assert manifest.chunk_count > 300 and not (out / "bm25_shards").exists()
    assert BM25Index.load(out / "bm25", cfg.index.bm25).num_docs == manifest.chunk_count

"""The sharded, bounded-memory BM25 build equals bm25s's in-memory build, value for value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from krqa.corpus.pipeline import build_chunks
from krqa.corpus.store import load_chunks
from krqa.index.bm25 import BM25Index
from krqa.index.bm25_build import merge_shards, postings, write_shard
from krqa.index import build as index_build
from krqa.index.build import build_index
from krqa.index.config import BM25Config
from krqa.index.tokenize import KiwiTokenizer

QUERIES = ["설날은 음력 몇 월 며칠인가", "판소리 고수 북장단", "김장 배추 양념", "Seoul 2002 월드컵", "없는낱말"]


@pytest.fixture(scope="module")
def texts(tiny_config, repo: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    out = tmp_path_factory.mktemp("chunks") / "store"
    build_chunks(tiny_config().corpus, out, workers=1)
    return list(load_chunks(out)["index_text"])


def _bm25s_reference(token_lists: list[list[str]], cfg: BM25Config):
    """bm25s's own in-memory index of the same tokens: the values every build must reproduce."""
    import bm25s
    from bm25s.tokenization import Tokenized

    vocab: dict[str, int] = {}
    ids = [[vocab.setdefault(t, len(vocab)) for t in terms] for terms in token_lists]
    model = bm25s.BM25(method=cfg.method, k1=cfg.k1, b=cfg.b, delta=cfg.delta)
    model.index(Tokenized(ids=ids, vocab=vocab), show_progress=False)
    return model, vocab


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire", "bm25l", "bm25+"])
def test_sharded_merge_equals_bm25s_in_memory_build(texts: list[str], tmp_path: Path, method: str) -> None:
    cfg = BM25Config(method=method)
    token_lists = KiwiTokenizer(cfg).tokenize(texts)
    # Shards of uneven vocabularies, some candidates dropped (as a build drops duplicate chunks).
    dropped = set(range(3, len(texts), 11))
    kept_lists = [t for i, t in enumerate(token_lists) if i not in dropped]
    reference, ref_vocab = _bm25s_reference(kept_lists, cfg)
    paths, kept = [], []
    for i, a in enumerate(range(0, len(texts), 37)):
        b = min(a + 37, len(texts))
        paths.append(tmp_path / f"shard-{i}.npz")
        write_shard(postings(token_lists[a:b]), paths[-1])
        kept.append(np.array([j - a for j in range(a, b) if j not in dropped], dtype=np.int64))
    out = tmp_path / "merged"
    out.mkdir()
    assert merge_shards(paths, cfg, out, kept=kept, block_entries=500) == len(kept_lists)  # about 30 blocks of terms
    merged = BM25Index.load(out, cfg)
    assert merged.num_docs == len(kept_lists)
    vocab = merged.vocab.to_dict()
    ref_vocab.pop("", None)  # bm25s's padding token
    assert set(ref_vocab) <= set(vocab) and merged.vocab.get("없는낱말") is None
    assert sorted(vocab, key=lambda t: t.encode("utf-8")) == sorted(vocab, key=vocab.__getitem__)  # ids are byte-order ranks
    for term in set(vocab) - set(ref_vocab):  # only in dropped chunks: an empty column
        assert merged.indptr[vocab[term]] == merged.indptr[vocab[term] + 1]
    for query in QUERIES:
        words = [t for t in merged.tokenizer(query) if t in ref_vocab]
        want = reference.get_scores_from_ids([ref_vocab[t] for t in words]) if words else np.zeros(len(kept_lists))
        if getattr(reference, "nonoccurrence_array", None) is not None and words:
            want = want - np.asarray(reference.nonoccurrence_array)[[ref_vocab[t] for t in words]].sum()
        np.testing.assert_allclose(merged.scores(merged.term_ids(words)), want, rtol=1e-6, atol=1e-6)
    assert not (out / "runs").exists()


def test_interrupted_merge_resumes_without_rereading_the_corpus(tiny_config, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "index"
    cfg = tiny_config(f"index.dir={out}", "index.dense.backend=none", "corpus.piece_mb=0.01")

    def crash(*args, **kwargs):
        raise RuntimeError("injected crash in the merge")

    monkeypatch.setattr(index_build, "merge_shards", crash)
    with pytest.raises(RuntimeError, match="injected crash"):
        build_index(cfg.corpus, cfg.index, workers=1)
    shards = sorted((tmp_path / "index.partial" / "bm25_shards").glob("shard-*.npz"))
    assert len(shards) > 2 and not out.exists()  # one shard per piece of the dumps
    monkeypatch.undo()
    calls = []
    monkeypatch.setattr(index_build, "build_chunks", lambda *a, **k: calls.append(a) or {})
    manifest = build_index(cfg.corpus, cfg.index, resume=True, workers=1)
    assert calls == []  # every shard came from the interrupted run
    assert manifest.chunk_count > 300 and not (out / "bm25_shards").exists()
    assert BM25Index.load(out / "bm25", cfg.index.bm25).num_docs == manifest.chunk_count

"""Stage-2 context cache: retrieved once in a batch, reused only while index, settings and questions match."""

from __future__ import annotations

import json
from pathlib import Path

from krqa.config import load_config
from krqa.qa.data import SHORT, QAItem
from krqa.training.contexts import retrieve_contexts


class _Manifest(dict):
    """Stands in for an IndexManifest: the cache key hashes its JSON."""

    def to_json(self) -> dict:
        return dict(self)


class CountingRetriever:
    """A retriever over a fixed passage list that records its calls, to see when the cache is used."""

    def __init__(self, manifest: dict) -> None:
        from krqa.index.types import Hit

        self.manifest = _Manifest(manifest)
        self.calls: list[tuple[int, int | None]] = []
        self.hits = [Hit(chunk_id=i, score=1.0 / (i + 1), doc_id=f"d{i}", title=f"문서{i}", section="", text=f"본문 {i}", source="test", url="") for i in range(10)]

    def search_items(self, items: list[QAItem], top_k: int | None = None, mode: str | None = None) -> list[list]:
        self.calls.append((len(items), top_k))
        return [self.hits[i % 5 : i % 5 + (top_k or 3)] for i in range(len(items))]


def _items(n: int, suffix: str = "") -> list[QAItem]:
    return [QAItem(f"q{i}", "c", "d", SHORT, "k", f"질문 {i}{suffix}", answer="a") for i in range(n)]


def test_cache_reused_only_when_hash_matches(repo: Path, tmp_path: Path) -> None:
    cfg = load_config(repo / "configs" / "tiny-test.yaml")
    path = tmp_path / "contexts.json"
    retriever = CountingRetriever({"chunks": 10, "encoder": "e5"})
    hits, info = retrieve_contexts(cfg, _items(4), path, 3, retriever=retriever)
    assert retriever.calls == [(4, 3)] and not info["reused"]
    assert [h.chunk_id for h in hits["q1"]] == [1, 2, 3] and hits["q1"][0].title == "문서1"
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["sha256"] == info["sha256"] and set(saved["contexts"]) == {"q0", "q1", "q2", "q3"}

    again, info2 = retrieve_contexts(cfg, _items(4), path, 3, retriever=retriever)
    assert retriever.calls == [(4, 3)] and info2["reused"] and info2["sha256"] == info["sha256"]
    assert [h.to_json() for h in again["q2"]] == [h.to_json() for h in hits["q2"]]

    retrieve_contexts(cfg, _items(4, " 수정"), path, 3, retriever=retriever)  # questions changed
    retrieve_contexts(cfg, _items(4, " 수정"), path, 2, retriever=retriever)  # top-k changed
    other_index = CountingRetriever({"chunks": 11, "encoder": "e5"})
    retrieve_contexts(cfg, _items(4, " 수정"), path, 2, retriever=other_index)  # index rebuilt
    assert retriever.calls == [(4, 3), (4, 3), (4, 2)] and other_index.calls == [(4, 2)]
    cfg2 = load_config(repo / "configs" / "tiny-test.yaml", ["retrieval.mode=bm25"])
    retrieve_contexts(cfg2, _items(4, " 수정"), path, 2, retriever=other_index)  # retrieval settings changed
    assert len(other_index.calls) == 2


def test_corrupt_cache_is_recomputed(repo: Path, tmp_path: Path) -> None:
    cfg = load_config(repo / "configs" / "tiny-test.yaml")
    path = tmp_path / "contexts.json"
    path.write_text("{not json", encoding="utf-8")
    retriever = CountingRetriever({"chunks": 10})
    _, info = retrieve_contexts(cfg, _items(2), path, 3, retriever=retriever)
    assert not info["reused"] and len(retriever.calls) == 1
    assert json.loads(path.read_text(encoding="utf-8"))["sha256"] == info["sha256"]

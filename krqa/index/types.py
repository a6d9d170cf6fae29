"""The retrieval types the layers above share, light enough to import anywhere (no numpy, no index files).

``Retriever`` is what answering, training and serving need from an index; :class:`krqa.index.retriever.IndexRetriever`
is the implementation, and tests pass small fakes with the same methods.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

from krqa.index.manifest import IndexManifest
from krqa.qa.data import QAItem


@dataclass
class Hit:
    """One retrieved chunk with its score on the mode's own scale (fused z-score, BM25 or cosine)."""

    chunk_id: int
    score: float
    doc_id: str
    title: str
    section: str
    text: str
    source: str
    url: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SearchParams:
    """How many hits with which retriever; None takes ``retrieval.top_k`` / ``retrieval.mode``. Frozen, so that
    requests asking for the same search can share one batched call (it is the serving batcher's key)."""

    top_k: int | None = None
    mode: str | None = None


class Retriever(Protocol):
    """What the answerer, the trainer and the service need from an opened index."""

    manifest: IndexManifest

    @property
    def modes(self) -> tuple[str, ...]: ...

    def search_batch(self, queries: list[str], top_k: int | None = None, mode: str | None = None) -> list[list[Hit]]: ...

    def search_items(self, items: list[QAItem], top_k: int | None = None, mode: str | None = None) -> list[list[Hit]]: ...

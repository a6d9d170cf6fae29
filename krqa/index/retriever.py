"""Retrievers over a built index: BM25, dense, and hybrid fusion, with optional cross-encoder reranking.

Hybrid takes ``candidates`` hits from each side, then scores the union exactly on both sides (the BM25
score vector is already computed for every chunk; dense scores come from the stored embeddings), so fusion
never has to guess a score for a chunk one side did not return.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from krqa.corpus.store import STORE_FILE
from krqa.errors import InputError
from krqa.index import manifest as mf
from krqa.index.bm25 import BM25Index, top_positive
from krqa.index.config import MODES, BM25Config, DenseConfig, RetrievalConfig
from krqa.index.encoders import encoder_identity, make_encoder
from krqa.index.fusion import fuse
from krqa.index.query import build_queries
from krqa.index.tokenize import has_content
from krqa.index.types import Hit
from krqa.model_location import find_model_dir
from krqa.qa.data import QAItem

log = logging.getLogger(__name__)

HIT_COLUMNS = ("doc_id", "title", "section", "text", "source", "url")


class IndexRetriever:
    """Opened with :func:`open_retriever`. Index state is read-only; encoder calls are serialised by a lock
    because the serving layer searches from several threads and native encoders are not re-entrant."""

    def __init__(self, cfg: RetrievalConfig, root: Path, manifest: mf.IndexManifest, table, bm25, encoder=None,
                 faiss_index=None, embeddings: np.ndarray | None = None) -> None:
        self.cfg = cfg
        self.root = root
        self.manifest = manifest
        self.table = table
        # Row lookups go batch by batch: ``Table.take`` on the memory-mapped store concatenates every chunk
        # of the columns it touches first, which cost 29 ms per query at 100k chunks.
        self._batches = table.to_batches()
        self._offsets = np.cumsum([0] + [b.num_rows for b in self._batches])
        self.bm25 = bm25
        self.encoder = encoder
        self.faiss_index = faiss_index
        self.embeddings = embeddings
        self._reranker = None
        self._lock = threading.Lock()

    @property
    def modes(self) -> tuple[str, ...]:
        return MODES if self.faiss_index is not None else ("bm25",)

    def __len__(self) -> int:
        return self.table.num_rows

    # --- validation -------------------------------------------------------------------------------

    def _check(self, queries: list[str], top_k: int | None, mode: str | None) -> tuple[int, str]:
        if mode is None:
            # The configured default may name dense retrieval while this index was deliberately built
            # BM25-only (index.dense.backend=none); only an explicit request for a missing mode is an error.
            mode = self.cfg.mode if self.cfg.mode in self.modes else "bm25"
        if mode not in MODES:
            raise InputError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        if mode not in self.modes:
            raise InputError(f"mode {mode!r}: index {self.root} has no dense vectors (built with index.dense.backend=none); use mode bm25")
        top_k = self.cfg.top_k if top_k is None else top_k
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= self.cfg.max_top_k:
            raise InputError(f"top_k {top_k!r}: must be an integer from 1 to {self.cfg.max_top_k} (retrieval.max_top_k)")
        for i, q in enumerate(queries):
            where = "query" if len(queries) == 1 else f"query #{i}"
            if not isinstance(q, str) or not q.strip():
                raise InputError(f"{where}: empty")
            if not has_content(q):
                raise InputError(f"{where} {q.strip()[:40]!r}: no letters or digits to search for")
        return int(top_k), mode

    # --- search -----------------------------------------------------------------------------------

    def search(self, query: str, top_k: int | None = None, mode: str | None = None) -> list[Hit]:
        return self.search_batch([query], top_k, mode)[0]

    def search_batch(self, queries: list[str], top_k: int | None = None, mode: str | None = None) -> list[list[Hit]]:
        """Many queries at once: one encoder call and one FAISS search for the whole batch."""
        queries = list(queries)
        top_k, mode = self._check(queries, top_k, mode)
        if not queries:
            return []
        ranked = self._rank(queries, top_k, mode)
        return self._hits(ranked)

    def search_items(self, items: list[QAItem], top_k: int | None = None, mode: str | None = None) -> list[list[Hit]]:
        """Competition items through the query builder; per-option sub-queries are merged by best score."""
        per_item = [build_queries(item, self.cfg.query) for item in items]
        for item, queries in zip(items, per_item, strict=True):
            if not any(has_content(q) for q in queries):
                raise InputError(f"item {item.id!r}: question and topic_keyword have no searchable text")
        flat = [q for queries in per_item for q in queries if has_content(q)]
        top_k, mode = self._check(flat, top_k, mode)
        ranked = self._rank(flat, top_k, mode)
        merged: list[list[tuple[int, float]]] = []
        pos = 0
        for queries in per_item:
            n = sum(1 for q in queries if has_content(q))
            best: dict[int, float] = {}
            for ids, scores in ranked[pos:pos + n]:
                for cid, s in zip(ids.tolist(), scores.tolist(), strict=True):
                    best[cid] = max(s, best.get(cid, -np.inf))
            pos += n
            merged.append(sorted(best.items(), key=lambda kv: -kv[1])[:top_k])
        return self._hits([(np.array([c for c, _ in m], dtype=np.int64), np.array([s for _, s in m])) for m in merged])

    def _rank(self, queries: list[str], top_k: int, mode: str) -> list[tuple[np.ndarray, np.ndarray]]:
        cfg = self.cfg
        depth = max(top_k, cfg.candidates) if (mode == "hybrid" or cfg.reranker.model or cfg.max_per_doc) else top_k
        n = len(self)
        depth = min(depth, n)
        out: list[tuple[np.ndarray, np.ndarray]] = []

        # Full BM25 score vectors are made one query at a time below: a batch of them at 4.5M chunks would
        # hold 18 MB per query.
        term_lists = self.bm25.tokenizer.tokenize(queries) if mode in ("bm25", "hybrid") else []
        if mode in ("dense", "hybrid"):
            from krqa.index.dense import search_faiss  # start-up time: faiss loads only for a dense or hybrid search

            with self._lock:
                qvecs = self.encoder.encode_queries(queries)
            d_ids, d_scores = search_faiss(self.faiss_index, qvecs, depth)
        for i in range(len(queries)):
            bm25_full = self.bm25.scores(self.bm25.term_ids(term_lists[i])) if term_lists else None
            if mode == "bm25":
                ids = top_positive(bm25_full, depth)
                scores = bm25_full[ids].astype(np.float64)
            elif mode == "dense":
                keep = d_ids[i] >= 0
                ids, scores = d_ids[i][keep], d_scores[i][keep].astype(np.float64)
            else:
                b_ids = top_positive(bm25_full, depth)
                dense_ids = d_ids[i][d_ids[i] >= 0]
                ids = np.unique(np.concatenate([b_ids, dense_ids]))
                exact_dense = self.embeddings[ids].astype(np.float32) @ qvecs[i]
                matrix = np.stack([bm25_full[ids], exact_dense], axis=1)
                scores = fuse(matrix, [cfg.bm25_weight, cfg.dense_weight], cfg.fusion, cfg.normalization, cfg.rrf_k)
                order = np.argsort(-scores, kind="stable")
                ids, scores = ids[order], scores[order]
            if cfg.reranker.model and ids.size:
                ids, scores = self._rerank(queries[i], ids, top_k)
            if cfg.max_per_doc:
                ids, scores = self._cap_per_doc(ids, scores, cfg.max_per_doc)
            out.append((ids[:top_k], scores[:top_k]))
        return out

    def _cap_per_doc(self, ids: np.ndarray, scores: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
        doc_ids = self.rows(ids, ["doc_id"])["doc_id"]
        seen: dict[str, int] = {}
        keep = []
        for j, d in enumerate(doc_ids):
            seen[d] = seen.get(d, 0) + 1
            if seen[d] <= cap:
                keep.append(j)
        return ids[keep], scores[keep]

    def _rerank(self, query: str, ids: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cross-encoder scores replace the fused order of the first max(top_n, top_k) candidates."""
        rcfg = self.cfg.reranker
        head = ids[: max(rcfg.top_n, top_k)]
        texts = self.rows(head, ["index_text"])["index_text"]
        with self._lock:
            if self._reranker is None:
                self._reranker = _load_cross_encoder(rcfg.model)
            r = np.asarray(self._reranker.predict([(query, t) for t in texts], batch_size=rcfg.batch_size, show_progress_bar=False), dtype=np.float64)
        order = np.argsort(-r, kind="stable")
        return head[order], r[order]

    def rows(self, ids: np.ndarray, columns: list[str]) -> dict[str, list[Any]]:
        """Column values of the chunks ``ids`` (in that order), reading only the record batches they sit in."""
        ids = np.asarray(ids, dtype=np.int64)
        out: dict[str, list[Any]] = {c: [None] * ids.size for c in columns}
        if not ids.size:
            return out
        which = np.searchsorted(self._offsets, ids, side="right") - 1
        for b in np.unique(which):
            pos = np.flatnonzero(which == b)
            part = self._batches[b].select(columns).take(ids[pos] - self._offsets[b]).to_pydict()
            for c in columns:
                for p, v in zip(pos.tolist(), part[c], strict=True):
                    out[c][p] = v
        return out

    def _hits(self, ranked: list[tuple[np.ndarray, np.ndarray]]) -> list[list[Hit]]:
        """One row lookup for every hit of the batch."""
        all_ids = np.concatenate([ids for ids, _ in ranked]) if ranked else np.empty(0, np.int64)
        rows = self.rows(all_ids, list(HIT_COLUMNS))
        out, pos = [], 0
        for ids, scores in ranked:
            hits = []
            for j in range(ids.size):
                r = pos + j
                hits.append(Hit(chunk_id=int(ids[j]), score=float(scores[j]), doc_id=rows["doc_id"][r], title=rows["title"][r],
                                section=rows["section"][r], text=rows["text"][r], source=rows["source"][r], url=rows["url"][r]))
            pos += ids.size
            out.append(hits)
        return out


def _load_cross_encoder(model: str):
    try:
        from sentence_transformers import CrossEncoder  # start-up time: sentence-transformers loads torch, only for a reranker
    except ImportError:
        raise InputError("retrieval.reranker needs: pip install sentence-transformers") from None

    path = find_model_dir(model, "retrieval.reranker.model")
    try:
        return CrossEncoder(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"retrieval.reranker.model={model!r}: cannot load {path} ({exc.__class__.__name__})") from None


def _open_table(store_dir: Path):
    """The chunk store's Arrow stream, memory-mapped: rows are read from the page cache on demand."""
    import pyarrow as pa  # start-up time: pyarrow loads only where the chunk store is read

    path = store_dir / STORE_FILE
    if not path.is_file():
        raise InputError(f"{path}: chunk store missing; rebuild the index")
    return pa.ipc.open_stream(pa.memory_map(str(path))).read_all()


def open_retriever(index_dir: str | os.PathLike[str], retrieval: RetrievalConfig, dense: DenseConfig) -> IndexRetriever:
    """Open the index in ``index_dir`` read-only after checking its manifest against the files and against the
    encoder ``dense`` names; ``retrieval`` is how it searches."""
    root = Path(index_dir)
    manifest = mf.read_manifest(root)
    mf.check_files(root, manifest)
    n = manifest.chunk_count
    table = _open_table(root / mf.CHUNKS_DIR)
    if table.num_rows != n:
        raise InputError(f"{root}: chunk store has {table.num_rows} rows but the manifest says {n}; rebuild the index")
    # Queries must be tokenized exactly as the chunks were, whatever the current config says.
    bm25_cfg = BM25Config.model_validate(manifest.config["index"]["bm25"])
    bm25 = BM25Index.load(root / mf.BM25_DIR, bm25_cfg)
    if bm25.num_docs != n:
        raise InputError(f"{root}/{mf.BM25_DIR}: {bm25.num_docs} documents but the manifest says {n} chunks; rebuild the index")
    encoder = faiss_index = embeddings = None
    built = manifest.encoder
    wanted = encoder_identity(dense)
    if built is not None and wanted is not None:
        mf.check_encoder(root, manifest, wanted)
        from krqa.index.dense import read_faiss  # start-up time: faiss loads only for a dense index

        encoder = make_encoder(dense)
        assert encoder is not None and manifest.faiss is not None
        mf.check_encoder(root, manifest, encoder.name, int(encoder.dim))
        faiss_cfg = dense.faiss.model_copy(update={"type": manifest.faiss["type"]})
        faiss_index = read_faiss(root / mf.FAISS_FILE, faiss_cfg)
        embeddings = np.load(root / mf.EMBEDDINGS_FILE, mmap_mode="r")
        if faiss_index.ntotal != n or embeddings.shape != (n, built.dim):
            raise InputError(f"{root}/{mf.DENSE_DIR}: {faiss_index.ntotal} vectors, embeddings {embeddings.shape}, but the manifest says {n} chunks of dim {built.dim}; rebuild the index")
    elif built is None and wanted is not None:
        log.info("%s has no dense vectors; only bm25 search is available", root)
    # Kiwi and the encoders finish loading on their first call (about 2.5 s each on 2 cores); paying that
    # here keeps it out of the first request served and out of the latency `krqa search` reports.
    bm25.tokenizer.tokenize(["색인 준비"])
    if encoder is not None:
        encoder.encode_queries(["색인 준비"])
    return IndexRetriever(retrieval, root, manifest, table, bm25, encoder, faiss_index, embeddings)

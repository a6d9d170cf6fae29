"""The corpus stage on every core: pieces of the dumps are read, cleaned, sentence-split, packed into
candidate chunks and screened (length, Korean ratio, dedup hashes) in worker processes; the parent accepts
the candidates in corpus order, in the same document batches as a one-process build, so chunk ids, texts and
duplicate decisions are identical. Only the first-seen-wins duplicate check is sequential, and it is cheap.

The same :func:`chunk_piece` runs in Ray tasks (``krqa.index.ray_build``); only the map differs. The local
pool uses the spawn start method (Kiwi's threads do not survive fork), so a script that builds with several
workers needs the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np

from krqa.corpus.chunking import Chunk, Chunker, Screening
from krqa.corpus.config import ChunkingConfig
from krqa.corpus.document import Document, Skip
from krqa.corpus.pieces import Piece, read_piece
from krqa.index.bm25_build import Postings
from krqa.index.config import BM25Config
from krqa.index.tokenize import make_analyzer

PieceMap = Callable[[list[Piece], dict], Iterator["PieceResult"]]
"""Runs :func:`chunk_piece` over pieces with a :func:`chunk_spec` and yields the results in piece order (a
process pool, Ray Data, or in this process)."""


@dataclass
class PieceResult:
    """``records`` in file order: a :class:`Skip`, or the number of candidate chunks of the next document;
    ``postings``: the BM25 shard arrays of every candidate chunk (:func:`krqa.index.bm25_build.postings`), when
    the spec asks for terms."""

    records: list[Skip | int]
    chunks: list[Chunk]
    screening: Screening
    postings: dict[str, np.ndarray] | None = None


def chunk_spec(chunking: ChunkingConfig, bm25: BM25Config | None) -> dict:
    """What a worker needs to chunk (and, with ``bm25``, extract terms) exactly as the parent would."""
    return {"chunking": chunking.model_dump(), "bm25": bm25.model_dump() if bm25 is not None else None}


def make_chunker(spec: dict, workers: int = 0, length_fn=None) -> Chunker:
    """The chunker a spec describes; with a BM25 config its analyzer also extracts that config's terms."""
    bm25 = BM25Config(**spec["bm25"]) if spec["bm25"] is not None else None
    analyzer = make_analyzer(bm25, workers) if bm25 is not None else None
    return Chunker(ChunkingConfig(**spec["chunking"]), length_fn=length_fn, analyzer=analyzer, bigrams=bool(bm25 and bm25.bigrams))


_CHUNKERS: dict[str, Chunker] = {}


def chunk_piece(piece: Piece, spec: dict, chunker: Chunker | None = None) -> PieceResult:
    """Read one piece and do all per-document work; a worker's chunker uses one Kiwi thread, since the
    processes are the parallelism (an in-process build passes its own ``chunker``)."""
    if chunker is None:
        key = json.dumps(spec, sort_keys=True)
        if key not in _CHUNKERS:
            _CHUNKERS[key] = make_chunker(spec, workers=1)
        chunker = _CHUNKERS[key]
    records: list[Skip | int] = []
    docs: list[Document] = []
    for record in read_piece(piece):
        if isinstance(record, Document):
            record.source = piece.name
            docs.append(record)
            records.append(0)
        else:
            records.append(record)
    per_doc: list[list[Chunk]] = []
    built = Postings() if chunker.with_terms else None
    size = chunker.cfg.batch_size
    for start in range(0, len(docs), size):
        batch = chunker.candidates_per_doc(docs[start:start + size])
        if built is not None:
            built.add([c.terms or [] for doc_chunks in batch for c in doc_chunks])
            for doc_chunks in batch:
                for c in doc_chunks:
                    c.terms = None  # the postings carry them; strings would only cost memory and pickling
        per_doc.extend(batch)
    counts = iter(len(c) for c in per_doc)
    records = [next(counts) if isinstance(r, int) else r for r in records]
    chunks = [c for doc_chunks in per_doc for c in doc_chunks]
    arrays = built.arrays() if built is not None else None
    return PieceResult(records, chunks, chunker.screen(chunks), arrays)


def pool_map(workers: int) -> PieceMap:
    """A spawn-context process pool (Kiwi's threads do not survive fork); results come back in order."""

    def run(pieces: list[Piece], spec: dict) -> Iterator[PieceResult]:
        with mp.get_context("spawn").Pool(min(workers, max(1, len(pieces)))) as pool:
            yield from pool.imap(partial(chunk_piece, spec=spec), pieces, chunksize=1)

    return run


def local_map(chunker: Chunker) -> PieceMap:
    """The pieces read one after another in this process, with the parent's own chunker (its Kiwi threads and,
    for ``chunking.unit=tokens``, the encoder's tokenizer)."""

    def run(pieces: list[Piece], spec: dict) -> Iterator[PieceResult]:
        for piece in pieces:
            yield chunk_piece(piece, spec, chunker)

    return run


def default_workers(workers: int) -> int:
    return workers or os.cpu_count() or 1


def accept_in_order(
    pieces: list[Piece],
    results: Iterable[PieceResult],
    chunker: Chunker,
    on_record: Callable[[Piece, Skip | None], None],
) -> Iterator[Chunk]:
    """Accepted chunks in corpus order; ``on_record`` sees each skip, and ``None`` for each document."""
    batch = _Batch()
    size = chunker.cfg.batch_size
    for p, (piece, result) in enumerate(zip(pieces, results, strict=True)):
        for i, chunk in enumerate(result.chunks):
            chunk.ref = (p, i)
        pos = sig_pos = 0
        reasons = result.screening.reasons
        for record in result.records:
            if isinstance(record, Skip):
                on_record(piece, record)
                continue
            n = record
            doc_reasons = reasons[pos:pos + n]
            n_sigs = sum(r is None for r in doc_reasons)
            on_record(piece, None)
            sigs = result.screening.sigs[sig_pos:sig_pos + n_sigs] if result.screening.sigs is not None else None
            keys = result.screening.keys[pos:pos + n] if result.screening.keys else []
            batch.add(result.chunks[pos:pos + n], doc_reasons, keys, sigs)
            if batch.docs >= size:
                yield from batch.accept(chunker)
            pos += n
            sig_pos += n_sigs
    yield from batch.accept(chunker)


class _Batch:
    """Documents gathered across pieces into the batches a one-process build would have made."""

    def __init__(self) -> None:
        self.docs = 0
        self.chunks: list[Chunk] = []
        self.reasons: list[str | None] = []
        self.keys: list[bytes] = []
        self.sigs: list[np.ndarray] = []
        self.has_sigs = False

    def add(self, chunks: list[Chunk], reasons: list[str | None], keys: list[bytes], sigs: np.ndarray | None) -> None:
        self.docs += 1
        self.chunks += chunks
        self.reasons += reasons
        self.keys += keys
        if sigs is not None:
            self.has_sigs = True
            self.sigs.append(sigs)

    def accept(self, chunker: Chunker) -> list[Chunk]:
        if not self.docs:
            return []
        sigs = np.concatenate(self.sigs) if self.has_sigs else None
        out = chunker.accept(self.chunks, Screening(self.reasons, self.keys, sigs))
        self.__init__()
        return out

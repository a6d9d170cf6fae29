"""Dumps in, chunk store out: pick a reader per source, chunk everything, write atomically, report.

The report counts what was read, what was left out by design (redirects, disambiguation pages, other
namespaces) and what was skipped as bad input (with positions); ``strict`` turns the first bad page into a
failure, and because the store is built in a temporary directory nothing half-written is left behind.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from krqa.corpus.chunking import LengthFn
from krqa.corpus.config import CorpusConfig, SourceConfig
from krqa.corpus.document import Document, Skip
from krqa.corpus.fileio import source_digest
from krqa.corpus.formats import check_source, detect_format, plan_pieces
from krqa.corpus.parallel import PieceMap, PieceResult, accept_in_order, chunk_spec, default_workers, local_map, make_chunker, pool_map
from krqa.corpus.pieces import Piece
from krqa.corpus.store import REPORT_FILE, write_chunks
from krqa.corpus.store import foreign_content as store_foreign_content
from krqa.errors import InputError
from krqa.fsutil import atomic_dir, atomic_path, atomic_write_json, check_output_dir
from krqa.index.bm25_build import shard_name, write_shard
from krqa.index.config import BM25Config
from krqa.log import progress_disabled
from krqa.model_location import find_model_dir

log = logging.getLogger(__name__)

MAX_LISTED_SKIPS = 50


@dataclass
class SourceReport:
    name: str
    path: str
    format: str
    bytes: int
    sha256: str
    docs: int = 0
    chunks: int = 0
    left_out: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    skips: list[dict[str, str]] = field(default_factory=list)

    def note(self, skip: Skip) -> None:
        if skip.is_error:
            self.skipped[skip.reason] += 1
            if len(self.skips) < MAX_LISTED_SKIPS:
                self.skips.append(skip.to_json())
        else:
            self.left_out[skip.reason] += 1

    def to_json(self) -> dict:
        return {
            "name": self.name, "path": self.path, "format": self.format, "bytes": self.bytes, "sha256": self.sha256,
            "docs": self.docs, "chunks": self.chunks, "left_out": dict(self.left_out), "skipped": dict(self.skipped),
            "skips": self.skips,
        }


@dataclass
class CorpusReport:
    out_dir: str
    sources: list[SourceReport] = field(default_factory=list)
    chunks: int = 0
    dropped_chunks: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def docs(self) -> int:
        return sum(s.docs for s in self.sources)

    @property
    def skipped(self) -> dict[str, int]:
        total: Counter = Counter()
        for s in self.sources:
            total.update(s.skipped)
        return dict(total)

    def to_json(self) -> dict:
        return {
            "out_dir": self.out_dir, "docs": self.docs, "chunks": self.chunks, "skipped": self.skipped,
            "dropped_chunks": self.dropped_chunks, "seconds": round(self.seconds, 2),
            "sources": [s.to_json() for s in self.sources],
        }


def resolve_format(source: SourceConfig, path: Path) -> str:
    """The source's format (detected for ``auto``), checked against the format table and the path."""
    if not path.exists():
        raise InputError(f"{path}: corpus source not found")
    fmt = detect_format(path) if source.format == "auto" else source.format
    check_source(path, fmt)
    return fmt


def iter_records(source: SourceConfig, max_page_chars: int | None = None) -> Iterator[Document | Skip]:
    """Documents and skip records of one source, in file order, honouring ``source.limit``; wiki pages longer
    than ``max_page_chars`` are cut to it before parsing."""
    path = Path(source.path)
    fmt = resolve_format(source, path)
    docs = 0
    cap = {"max_page_chars": max_page_chars} if max_page_chars is not None else {}
    for record in check_source(path, fmt).read(path, source=source.name or fmt, **cap):
        yield record
        if isinstance(record, Document):
            docs += 1
            if source.limit is not None and docs >= source.limit:
                return


def iter_documents(source: SourceConfig, on_skip: Callable[[Skip], None] | None = None) -> Iterator[Document]:
    for record in iter_records(source):
        if isinstance(record, Document):
            yield record
        elif on_skip is not None:
            on_skip(record)


def encoder_length_fn(model: str) -> LengthFn:
    """Token counts from the tokenizer of the dense encoder ``model``, loaded from local files only."""
    try:
        from transformers import AutoTokenizer  # start-up time: transformers loads only for token-counted chunks

        tokenizer = AutoTokenizer.from_pretrained(str(find_model_dir(model, "index.dense.model")), local_files_only=True)
    except (InputError, OSError, ValueError) as exc:
        raise InputError(f"chunking.unit=tokens: tokenizer of index.dense.model '{model}' is not available locally ({exc.__class__.__name__}); use unit=chars or download it first") from None

    def lengths(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []

    return lengths


def build_chunks(
    corpus: CorpusConfig,
    out_dir: Path,
    sources: list[SourceConfig] | None = None,
    strict: bool | None = None,
    length_fn: LengthFn | None = None,
    workers: int | None = None,
    piece_map: PieceMap | None = None,
    token_model: str | None = None,
    bm25: BM25Config | None = None,
    shard_dir: Path | None = None,
) -> CorpusReport:
    """Read every source, chunk, and write the chunk store plus ``corpus_report.json`` into ``out_dir``.

    The dumps are cut into pieces; with more than one worker (default ``corpus.workers``, 0 = all cores) or a
    ``piece_map`` (Ray) they are processed in parallel (:mod:`krqa.corpus.parallel`); the chunks are the same.
    Kiwi analyses each text once, as ``bm25.analysis`` says (running text when ``bm25`` is None); with
    ``shard_dir`` the BM25 terms from that analysis go there as one shard per piece, plus ``kept.npz`` naming
    the candidates that became chunks, for :func:`krqa.index.bm25_build.merge_shards`.
    With ``chunking.unit=tokens`` lengths are counted by ``length_fn``, else by the tokenizer of the dense
    encoder ``token_model`` (``index.dense.model``).
    """
    sources = list(sources if sources is not None else corpus.sources)
    strict = corpus.strict if strict is None else strict
    if not sources:
        raise InputError("corpus.sources is empty: add a source to the config or pass --corpus PATH")
    check_output_dir(out_dir, store_foreign_content, "chunk store")
    reports: list[SourceReport] = []
    for source in sources:
        path = Path(source.path)
        fmt = resolve_format(source, path)
        reports.append(SourceReport(source.name or fmt, str(path), fmt, *source_digest(path)))
    if corpus.chunking.unit == "tokens" and length_fn is None:
        length_fn = encoder_length_fn(token_model or "")
    spec = chunk_spec(corpus.chunking, bm25)
    chunker = make_chunker(spec, workers=corpus.chunking.kiwi_workers, length_fn=length_fn)
    report = CorpusReport(out_dir=str(out_dir), sources=reports)
    started = time.perf_counter()

    workers = default_workers(corpus.workers if workers is None else workers)
    piece_bytes = max(1, int(corpus.piece_mb * 1e6))
    if piece_map is None:
        # below one piece of input, starting processes costs more than it saves
        parallel = workers > 1 and length_fn is None and sum(r.bytes for r in reports) > piece_bytes
        piece_map = pool_map(workers) if parallel else local_map(chunker)
    pieces = [replace(p, max_page_chars=corpus.max_page_chars) for i, (source, rep) in enumerate(zip(sources, reports, strict=True))
              for p in plan_pieces(i, rep.name, Path(rep.path), rep.format, piece_bytes, source.limit)]
    log.info("corpus: %d pieces", len(pieces))
    kept: list[list[int]] = [[] for _ in pieces]

    def _note(rep: SourceReport, record: Skip) -> None:
        rep.note(record)
        if record.is_error:
            if strict:
                raise InputError(f"{rep.path}: {record} (strict mode)")
            log.warning("%s: skipped %s", rep.path, record)

    def results() -> Iterator[PieceResult]:
        for i, result in enumerate(piece_map(pieces, spec)):
            if shard_dir is not None and result.postings is not None:
                write_shard(result.postings, shard_dir / shard_name(i))
            result.postings = None
            yield result

    def rows() -> Iterator[dict]:
        with tqdm(desc="read+chunk", unit=" docs", disable=progress_disabled()) as bar:

            def on_record(piece: Piece, record: Skip | None) -> None:
                rep = reports[piece.source]
                if record is None:
                    rep.docs += 1
                    bar.update()
                else:
                    _note(rep, record)

            by_source = {r.name: r for r in reports}
            for chunk in accept_in_order(pieces, results(), chunker, on_record):
                by_source[chunk.source].chunks += 1
                kept[chunk.ref[0]].append(chunk.ref[1])
                yield chunk.to_row()

    if shard_dir is not None:
        shard_dir.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out_dir) as tmp:
        report.chunks = write_chunks(rows(), tmp)
        report.dropped_chunks = dict(chunker.stats.dropped)
        report.seconds = time.perf_counter() - started
        if report.chunks == 0:
            raise InputError(f"no chunks from {', '.join(r.path for r in reports)}: every page was skipped or filtered")
        atomic_write_json(tmp / REPORT_FILE, report.to_json())
        if shard_dir is not None:
            write_kept(shard_dir, [np.asarray(k, dtype=np.int64) for k in kept])
    return report


KEPT_FILE = "kept.npz"


def write_kept(shard_dir: Path, kept: list[np.ndarray]) -> None:
    with atomic_path(shard_dir / KEPT_FILE, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, *kept)


def read_kept(shard_dir: Path) -> list[np.ndarray]:
    """Per piece, the candidate numbers that became chunks (the order of :func:`build_chunks`'s shards)."""
    with np.load(shard_dir / KEPT_FILE) as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]

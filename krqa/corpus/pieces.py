"""Cut a dump into pieces that worker processes (or Ray tasks) read independently, and read one piece.

A piece owns the pages whose start lies in its range and reads past its end only to finish the last one,
so every page belongs to exactly one piece and the pieces, read in order, give the same pages as one pass:

- MediaWiki ``.xml``: byte ranges; a page is owned by the piece its ``<page>`` tag starts in.
- MediaWiki multistream ``.bz2`` (what Wikimedia publishes as ``pages-articles-multistream``): runs of bz2
  streams. A damaged stream costs its own pages only: the next stream is a clean place to restart.
- Namuwiki ``.json``: item ranges, cut before a ``{"`` that follows ``[`` or ``,`` (inside a JSON string
  every quote is escaped, so that pattern only occurs between items).
- JSONL: line ranges, with global line numbers kept for reports.
- Anything else (SQuAD, gzip, single-stream bz2, a source with ``limit``) is one piece.
"""

from __future__ import annotations

import bz2
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from krqa.corpus.document import Document, Skip
from krqa.corpus.fileio import READ_ERRORS, Dump
from krqa.corpus.mediawiki import _CLOSE, _END, _OPEN, DEFAULT_BASE, DEFAULT_MAX_PAGE_CHARS, _url_prefix, iter_pages, page_record
from krqa.corpus.namuwiki import ITEM_START

BLOCK = 1 << 20
_BZ2_STREAM = re.compile(rb"BZh[1-9]\x31\x41\x59\x26\x53\x59")
_JSON_ITEM = re.compile(rb"[\[,]\s*(?=" + ITEM_START + rb")")


@dataclass(frozen=True)
class Piece:
    """``kind`` says how to read ``path``: ``xml``/``json``/``jsonl`` own bytes ``[start, end)``, ``bz2`` owns
    the streams at ``streams`` (file offsets; the next stream's offset or the file size follows), ``whole``
    reads the source with its normal reader."""

    source: int
    name: str
    path: str
    fmt: str
    kind: str
    start: int = 0
    end: int = 0
    streams: tuple[int, ...] = ()
    prefix: str = DEFAULT_BASE
    first_line: int = 1
    last: bool = True
    limit: int | None = None
    max_page_chars: int = DEFAULT_MAX_PAGE_CHARS


def plan_pieces(source: int, name: str, path: Path, fmt: str, piece_bytes: int, limit: int | None = None) -> list[Piece]:
    """The pieces of one source, in file order (one piece when the format or a ``limit`` forbids cutting)."""
    size = path.stat().st_size
    with Dump(path) as dump:
        compression = dump.compression
    whole = [Piece(source, name, str(path), fmt, "whole", 0, size, limit=limit)]
    if limit is not None or size <= piece_bytes or fmt == "squad" or compression == "gzip":
        return whole
    if fmt == "mediawiki":
        prefix = _header_prefix(path)
        if compression == "bz2":
            streams = _bz2_streams(path)
            if len(streams) < 2:
                return whole
            return _group_streams(source, name, path, fmt, streams + [size], piece_bytes, prefix)
        cuts = _cuts(path, size, piece_bytes, lambda window: window.find(_OPEN))
        return _ranges(source, name, path, fmt, "xml", cuts, size, prefix=prefix)
    if compression is not None:
        return whole
    if fmt == "namuwiki":
        cuts = _cuts(path, size, piece_bytes, lambda window: m.end() if (m := _JSON_ITEM.search(window)) else -1)
        return _ranges(source, name, path, fmt, "json", cuts, size)
    cuts = _cuts(path, size, piece_bytes, lambda window: window.find(b"\n") + 1 if b"\n" in window else -1)
    return _ranges(source, name, path, fmt, "jsonl", cuts, size, lines=_line_numbers(path, cuts))


def _header_prefix(path: Path) -> str:
    first = next(iter_pages(path), None)
    return _url_prefix(first[1]) if isinstance(first, tuple) else DEFAULT_BASE


def _bz2_streams(path: Path) -> list[int]:
    """File offsets where a bz2 stream starts (magic, level and the first block's 48-bit signature)."""
    found: list[int] = []
    overlap = 9
    with open(path, "rb") as fh:
        base, tail = 0, b""
        while block := fh.read(16 * BLOCK):
            window = tail + block
            for m in _BZ2_STREAM.finditer(window):
                at = base - len(tail) + m.start()
                if not found or at > found[-1]:
                    found.append(at)
            tail = window[-overlap:]
            base += len(block)
    return found


def _group_streams(source: int, name: str, path: Path, fmt: str, bounds: list[int], piece_bytes: int, prefix: str) -> list[Piece]:
    pieces, first = [], 0
    for i in range(1, len(bounds)):
        if bounds[i] - bounds[first] >= piece_bytes or i == len(bounds) - 1:
            pieces.append(Piece(source, name, str(path), fmt, "bz2", bounds[first], bounds[i], tuple(bounds[first:i + 1]), prefix, last=i == len(bounds) - 1))
            first = i
    return pieces


def _cuts(path: Path, size: int, piece_bytes: int, find) -> list[int]:
    """Piece starts: 0, then the first boundary (``find`` on a window) at or after each multiple of ``piece_bytes``."""
    cuts = [0]
    with open(path, "rb") as fh:
        target = piece_bytes
        while target < size:
            fh.seek(target)
            window, at = b"", -1
            while at < 0:
                more = fh.read(BLOCK)
                if not more:
                    break
                window += more
                at = find(window)
            if at < 0:
                break
            cut = target + at
            if cut > cuts[-1]:
                cuts.append(cut)
            target = max(cut + 1, target + piece_bytes)
    return cuts


def _line_numbers(path: Path, cuts: list[int]) -> list[int]:
    lines, count = [], 1
    with open(path, "rb") as fh:
        for i, cut in enumerate(cuts):
            lines.append(count)
            stop = cuts[i + 1] if i + 1 < len(cuts) else cut
            count += fh.read(stop - cut).count(b"\n") if stop > cut else 0
    return lines


def _ranges(source: int, name: str, path: Path, fmt: str, kind: str, cuts: list[int], size: int, prefix: str = DEFAULT_BASE, lines: list[int] | None = None) -> list[Piece]:
    bounds = cuts + [size]
    return [Piece(source, name, str(path), fmt, kind, bounds[i], bounds[i + 1], prefix=prefix, first_line=lines[i] if lines else 1,
                  last=i == len(cuts) - 1) for i in range(len(cuts))]


def read_piece(piece: Piece) -> Iterator[Document | Skip]:
    """Documents and skip records of one piece, in file order; positions name the dump file's bytes."""
    if piece.kind == "whole":
        from krqa.corpus.config import SourceConfig
        from krqa.corpus.pipeline import iter_records

        yield from iter_records(SourceConfig(path=piece.path, format=piece.fmt, name=piece.name, limit=piece.limit), piece.max_page_chars)
    elif piece.kind == "xml":
        with open(piece.path, "rb") as fh:
            fh.seek(piece.start)
            buf = fh.read(piece.end - piece.start)
            buf += _finish_page(buf, lambda: fh.read(BLOCK))
        yield from _pages(buf, piece.end - piece.start, piece, lambda pos: (piece.start + pos, "byte"))
    elif piece.kind == "bz2":
        yield from _read_bz2(piece)
    else:
        yield from _read_json(piece)


def _finish_page(buf: bytes, more) -> bytes:
    """Bytes past a piece's end up to the ``</page>`` of the last page that starts inside it."""
    last = buf.rfind(_OPEN)
    if last < 0 or buf.find(_CLOSE, last) >= 0:
        return b""
    extra = b""
    while block := more():
        extra += block
        if _CLOSE in extra:
            break
    return extra


def _pages(buf: bytes, owned: int, piece: Piece, where) -> Iterator[Document | Skip]:
    pos = buf.find(_OPEN)
    while 0 <= pos < owned:
        end = buf.find(_CLOSE, pos + len(_OPEN))
        nxt = buf.find(_OPEN, pos + len(_OPEN))
        offset, unit = where(pos)
        if end < 0:
            yield Skip("truncated", f"{unit} {offset}", "dump ends inside a page")
            return
        if 0 <= nxt < end:
            yield Skip("malformed_xml", f"{unit} {offset}", "<page> without </page>")
            pos = nxt
            continue
        stop = end + len(_CLOSE)
        yield from page_record(buf[pos:stop], offset, piece.prefix, piece.name, unit, piece.max_page_chars)
        pos = buf.find(_OPEN, stop)
    if piece.last and _END not in buf[-4096:]:
        yield Skip("truncated", f"{where(len(buf))[1]} {where(len(buf))[0]}", "dump ends before </mediawiki>")


def _read_bz2(piece: Piece) -> Iterator[Document | Skip]:
    """Each owned stream is decompressed on its own; a damaged one is reported (file offset) and skipped."""
    starts = piece.streams
    with open(piece.path, "rb") as fh:
        for i in range(len(starts) - 1):
            fh.seek(starts[i])
            raw = fh.read(starts[i + 1] - starts[i])
            try:
                data = _decompress(raw)
            except READ_ERRORS as exc:
                yield Skip("corrupt_stream", f"bz2 stream at file byte {starts[i]}", f"{type(exc).__name__}: {exc}; its pages are lost")
                continue
            is_last = piece.last and i == len(starts) - 2
            tail = b"" if is_last else _finish_page(data, _next_streams(fh, starts[i + 1]))
            sub = Piece(**{**piece.__dict__, "last": is_last})
            yield from _pages(data + tail, len(data), sub, lambda pos, at=starts[i]: (pos, f"bz2 stream at file byte {at}, byte"))


def _decompress(raw: bytes) -> bytes:
    out, rest = [], raw
    while rest:
        dec = bz2.BZ2Decompressor()
        out.append(dec.decompress(rest))
        if not dec.eof:
            raise EOFError("bz2 stream ends early")
        rest = dec.unused_data
    return b"".join(out)


def _next_streams(fh, offset: int):
    """Decompressed data of the streams after ``offset``, a stream at a time, for finishing a page."""
    state = {"offset": offset}

    def more() -> bytes:
        fh.seek(state["offset"])
        dec = bz2.BZ2Decompressor()
        out = b""
        while not dec.eof and (raw := fh.read(BLOCK)):
            try:
                out += dec.decompress(raw)
            except READ_ERRORS:
                return b""
            state["offset"] += len(raw) - len(dec.unused_data) if dec.eof else len(raw)
        return out

    return more


def _read_json(piece: Piece) -> Iterator[Document | Skip]:
    """Namuwiki items or JSONL lines of a byte range, through the normal reader on a temporary file."""
    from krqa.corpus.namuwiki import iter_namuwiki
    from krqa.corpus.sources import iter_jsonl

    with open(piece.path, "rb") as fh:
        fh.seek(piece.start)
        data = fh.read(piece.end - piece.start)
    if piece.kind == "json":
        data = (b"" if piece.start == 0 else b"[") + (data if piece.last else data.rstrip().rstrip(b",") + b"]")
    fd, tmp = tempfile.mkstemp(prefix="krqa-piece-", suffix=".json" if piece.kind == "json" else ".jsonl")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        records = iter_namuwiki(tmp, source=piece.name, max_page_chars=piece.max_page_chars) if piece.kind == "json" else iter_jsonl(tmp, source=piece.name)
        for record in records:
            if isinstance(record, Skip):
                record = _relocate(record, piece)
            yield record
    finally:
        os.unlink(tmp)


def _relocate(skip: Skip, piece: Piece) -> Skip:
    if piece.kind == "jsonl":
        return Skip(skip.reason, re.sub(r"line (\d+)", lambda m: f"line {int(m[1]) + piece.first_line - 1}", skip.position), skip.detail)
    return Skip(skip.reason, f"{skip.position} of the piece at file byte {piece.start}", skip.detail)

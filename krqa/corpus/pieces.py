"""Cut a dump into pieces that worker processes (or Ray tasks) read independently, and read one piece.

A piece owns the pages whose start lies in its range and reads past its end only to finish the last one,
so every page belongs to exactly one piece and the pieces, read in order, give the same pages as one pass.
Each format's planner here is its entry in :mod:`krqa.corpus.formats`:

- MediaWiki ``.xml``: byte ranges; a page is owned by the piece its ``<page>`` tag starts in.
- MediaWiki multistream ``.bz2`` (what Wikimedia publishes as ``pages-articles-multistream``): runs of bz2
  streams. A damaged stream costs its own pages only: the next stream is a clean place to restart.
- Namuwiki ``.json``: item ranges, cut before a ``{"`` that follows ``[`` or ``,`` (inside a JSON string
  every quote is escaped, so that pattern only occurs between items).
- JSONL: line ranges, with global line numbers kept for reports.
- wikiextractor: a tree in runs of whole files (consecutive small files together up to the piece size); one
  plain file in byte ranges cut where a ``<doc`` line starts.
- Anything else (SQuAD, gzip/xz, single-stream bz2, a source with ``limit``) is one ``whole`` piece, read by
  the format's reader that the piece carries.
"""

from __future__ import annotations

import bz2
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from krqa.corpus.document import Document, Skip
from krqa.corpus.fileio import READ_ERRORS, Dump, tree_files
from krqa.corpus.mediawiki import DEFAULT_BASE, DEFAULT_MAX_PAGE_CHARS, DUMP_END, PAGE_CLOSE, PAGE_OPEN, dump_url_prefix, page_record
from krqa.corpus.namuwiki import ITEM_START, iter_namuwiki
from krqa.corpus.sources import iter_jsonl
from krqa.corpus.wikiextractor import iter_file
from krqa.errors import InputError

BLOCK = 1 << 20
_BZ2_STREAM = re.compile(rb"BZh[1-9]\x31\x41\x59\x26\x53\x59")
_JSON_ITEM = re.compile(rb"[\[,]\s*(?=" + ITEM_START + rb")")

Reader = Callable[..., Iterator[Document | Skip]]
"""``reader(path, source=name, max_page_chars=n)``: a format's records of a whole source, in file order."""


@dataclass(frozen=True)
class Piece:
    """``kind`` says how to read ``path``: ``xml``/``json``/``jsonl``/``doc`` own bytes ``[start, end)``, ``bz2``
    owns the streams at ``streams`` (file offsets; the next stream's offset or the file size follows),
    ``files`` the files ``files`` of the folder ``path``, ``whole`` reads the source with ``reader`` (a
    module-level function, so a piece pickles for a worker process or a Ray task)."""

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
    files: tuple[str, ...] = ()
    reader: Reader | None = None


Planner = Callable[[Piece, int], list[Piece]]
"""``planner(whole, piece_bytes)``: a source's pieces in file order, or ``[whole]`` when it cannot be cut."""


def plan_mediawiki(whole: Piece, piece_bytes: int) -> list[Piece]:
    path = Path(whole.path)
    size = path.stat().st_size
    with Dump(path) as dump:
        compression = dump.compression
    if size <= piece_bytes or compression not in (None, "bz2"):
        return [whole]
    prefix = dump_url_prefix(path)
    if compression == "bz2":
        streams = _bz2_streams(path)
        return _group_streams(whole, streams + [size], piece_bytes, prefix) if len(streams) >= 2 else [whole]
    cuts = _cuts(path, size, piece_bytes, lambda window: window.find(PAGE_OPEN))
    return _ranges(whole, "xml", cuts, size, prefix=prefix)


def plan_namuwiki(whole: Piece, piece_bytes: int) -> list[Piece]:
    path = Path(whole.path)
    size = path.stat().st_size
    if size <= piece_bytes or _compressed(path):
        return [whole]
    cuts = _cuts(path, size, piece_bytes, lambda window: m.end() if (m := _JSON_ITEM.search(window)) else -1)
    return _ranges(whole, "json", cuts, size)


def plan_jsonl(whole: Piece, piece_bytes: int) -> list[Piece]:
    path = Path(whole.path)
    size = path.stat().st_size
    if size <= piece_bytes or _compressed(path):
        return [whole]
    cuts = _cuts(path, size, piece_bytes, lambda window: window.find(b"\n") + 1 if b"\n" in window else -1)
    return _ranges(whole, "jsonl", cuts, size, lines=_line_numbers(path, cuts))


def plan_wikiextractor(whole: Piece, piece_bytes: int) -> list[Piece]:
    """A tree in runs of consecutive files of about ``piece_bytes`` (a bigger file alone); a plain file in
    byte ranges cut where a ``<doc`` line starts; a compressed file whole."""
    path = Path(whole.path)
    if path.is_dir():
        return _file_runs(whole, tree_files(path), piece_bytes)
    size = path.stat().st_size
    if size <= piece_bytes or _compressed(path):
        return [whole]
    cuts = _cuts(path, size, piece_bytes, lambda window: at + 1 if (at := window.find(b"\n<doc")) >= 0 else -1)
    return _ranges(whole, "doc", cuts, size, lines=_line_numbers(path, cuts))


def _compressed(path: Path) -> bool:
    with Dump(path) as dump:
        return dump.compression is not None


def _file_runs(whole: Piece, files: list[Path], piece_bytes: int) -> list[Piece]:
    root = Path(whole.path)
    if not files:
        raise InputError(f"{root}: empty folder: no wikiextractor files (AA/wiki_00 …) under it")
    runs: list[list[Path]] = [[]]
    size = 0
    for file in files:
        grow = file.stat().st_size
        if runs[-1] and size + grow > piece_bytes:
            runs.append([])
            size = 0
        runs[-1].append(file)
        size += grow
    return [replace(whole, kind="files", files=tuple(f.relative_to(root).as_posix() for f in run), last=i == len(runs) - 1, reader=None)
            for i, run in enumerate(runs)]


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


def _group_streams(whole: Piece, bounds: list[int], piece_bytes: int, prefix: str) -> list[Piece]:
    pieces, first = [], 0
    for i in range(1, len(bounds)):
        if bounds[i] - bounds[first] >= piece_bytes or i == len(bounds) - 1:
            pieces.append(replace(whole, kind="bz2", start=bounds[first], end=bounds[i], streams=tuple(bounds[first:i + 1]),
                                  prefix=prefix, last=i == len(bounds) - 1, reader=None))
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


def _ranges(whole: Piece, kind: str, cuts: list[int], size: int, prefix: str = DEFAULT_BASE, lines: list[int] | None = None) -> list[Piece]:
    bounds = cuts + [size]
    return [replace(whole, kind=kind, start=bounds[i], end=bounds[i + 1], prefix=prefix, first_line=lines[i] if lines else 1,
                    last=i == len(cuts) - 1, reader=None) for i in range(len(cuts))]


def read_piece(piece: Piece) -> Iterator[Document | Skip]:
    """Documents and skip records of one piece, in file order; positions name the dump file's bytes."""
    if piece.kind == "whole":
        if piece.reader is None:
            raise InputError(f"{piece.path}: a whole piece of format '{piece.fmt}' without its reader")
        yield from _limited(piece.reader(piece.path, source=piece.name, max_page_chars=piece.max_page_chars), piece.limit)
    elif piece.kind == "xml":
        with open(piece.path, "rb") as fh:
            fh.seek(piece.start)
            buf = fh.read(piece.end - piece.start)
            buf += _finish_page(buf, lambda: fh.read(BLOCK))
        yield from _pages(buf, piece.end - piece.start, piece, lambda pos: (piece.start + pos, "byte"))
    elif piece.kind == "bz2":
        yield from _read_bz2(piece)
    elif piece.kind == "files":
        yield from _limited((r for rel in piece.files for r in iter_file(Path(piece.path, rel), rel, piece.name, piece.max_page_chars)), piece.limit)
    elif piece.kind == "doc":
        yield from iter_file(Path(piece.path), Path(piece.path).name, piece.name, piece.max_page_chars, piece.start, piece.end, piece.first_line)
    elif piece.kind in ("json", "jsonl"):
        yield from _read_json(piece)
    else:
        raise InputError(f"{piece.path}: unknown piece kind '{piece.kind}'")


def _limited(records: Iterator[Document | Skip], limit: int | None) -> Iterator[Document | Skip]:
    """``records`` up to and including the ``limit``-th document (``source.limit``)."""
    docs = 0
    for record in records:
        yield record
        if isinstance(record, Document):
            docs += 1
            if limit is not None and docs >= limit:
                return


def _finish_page(buf: bytes, more) -> bytes:
    """Bytes past a piece's end up to the ``</page>`` of the last page that starts inside it."""
    last = buf.rfind(PAGE_OPEN)
    if last < 0 or buf.find(PAGE_CLOSE, last) >= 0:
        return b""
    extra = b""
    while block := more():
        extra += block
        if PAGE_CLOSE in extra:
            break
    return extra


def _pages(buf: bytes, owned: int, piece: Piece, where) -> Iterator[Document | Skip]:
    pos = buf.find(PAGE_OPEN)
    while 0 <= pos < owned:
        end = buf.find(PAGE_CLOSE, pos + len(PAGE_OPEN))
        nxt = buf.find(PAGE_OPEN, pos + len(PAGE_OPEN))
        offset, unit = where(pos)
        if end < 0:
            yield Skip("truncated", f"{unit} {offset}", "dump ends inside a page")
            return
        if 0 <= nxt < end:
            yield Skip("malformed_xml", f"{unit} {offset}", "<page> without </page>")
            pos = nxt
            continue
        stop = end + len(PAGE_CLOSE)
        yield from page_record(buf[pos:stop], offset, piece.prefix, piece.name, unit, piece.max_page_chars)
        pos = buf.find(PAGE_OPEN, stop)
    if piece.last and DUMP_END not in buf[-4096:]:
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
    with open(piece.path, "rb") as fh:
        fh.seek(piece.start)
        data = fh.read(piece.end - piece.start)
    if piece.kind == "json":
        data = (b"" if piece.start == 0 else b"[") + (data if piece.last else data.rstrip().rstrip(b",") + b"]")
    fd, tmp = tempfile.mkstemp(prefix="krqa-piece-", suffix=".json" if piece.kind == "json" else ".jsonl")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        records = iter_namuwiki(tmp, source=piece.name, max_page_chars=piece.max_page_chars) if piece.kind == "json" else iter_jsonl(tmp, source=piece.name, max_page_chars=piece.max_page_chars)
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

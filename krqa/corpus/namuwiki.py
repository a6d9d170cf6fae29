"""Stream the Namuwiki dump (one JSON array of ``{namespace, title, text, contributors}``) item by item.

A small byte-level scanner cuts the array into items (strings are skipped by one regular expression each,
brackets counted outside them) and each item is decoded with ``json.loads``. Memory holds one item, and,
unlike a streaming JSON parser that stops at the first error, the reader survives damage: a bad byte or a
malformed item costs that item only. After a bad byte the scan goes on from the item's end (bytes >= 0x80 never
change where strings and brackets are); after other damage it resynchronises at the next ``,{"`` followed by one
of an item's own keys (which cannot occur inside a JSON string, where quotes are escaped, and skips nested
objects such as contributors), and every later document is kept. Positions are byte
offsets of the bad item in the file (in the decompressed stream for .bz2/.gz input).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Generator, Iterator
from urllib.parse import quote

from krqa.corpus.document import Document, Skip
from krqa.corpus.fileio import READ_ERRORS, Dump
from krqa.corpus.namumark import parse_namumark
from krqa.errors import InputError

log = logging.getLogger(__name__)

URL_PREFIX = "https://namu.wiki/w/"
_REDIRECT = re.compile(r"^\s*#(?:redirect|넘겨주기)\b", re.I)
_DISAMBIG = re.compile(r"\[include\(틀:동음이의")
BLOCK = 1 << 20
DEFAULT_MAX_PAGE_CHARS = 1_000_000
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*("?)|[\[\]{}]', re.S)
ITEM_START = rb'\{\s*"(?:namespace|title|text|contributors)"'
"""An item starts with one of a Namuwiki item's own keys, so a resync (and a piece cut) skips nested objects of
other shapes, such as ``{"name": …}`` in an array of contributors."""
_NEXT_ITEM = re.compile(rb",\s*(" + ITEM_START + rb")")
_SPACE = b" \t\r\n"
_BAD = object()
_BAD_UTF8 = object()


class _ReadError(Exception):
    pass


class _Scanner:
    """The decompressed byte stream as a growing buffer; ``base`` is the stream offset of ``buf[0]``."""

    def __init__(self, dump: Dump) -> None:
        self.dump = dump
        self.buf = b""
        self.base = 0
        self.eof = False

    def fill(self) -> bool:
        """Read one more block; False at the end of the stream."""
        if self.eof:
            return False
        try:
            block = self.dump.stream.read(BLOCK)
        except READ_ERRORS as exc:
            raise _ReadError(f"{type(exc).__name__}: {exc}") from None
        if not block:
            self.eof = True
            return False
        self.buf += block
        return True

    def drop_before(self, pos: int, keep: int = 0) -> int:
        """Forget ``buf[:pos]`` once that is at least ``keep`` bytes (copying the buffer for every small item
        would cost more than scanning it); returns the new index of ``pos``."""
        if pos < keep:
            return pos
        self.buf, self.base = self.buf[pos:], self.base + pos
        return 0

    def skip_space(self, pos: int) -> int:
        while True:
            while pos < len(self.buf) and self.buf[pos] in _SPACE:
                pos += 1
            if pos < len(self.buf) or not self.fill():
                return pos

    def item_end(self, start: int, limit: int) -> int | None:
        """End of the JSON object starting at ``buf[start]``; None when the stream ends or ``limit`` bytes pass
        first (a broken string can make the rest of the file look like one item)."""
        depth, pos = 0, start
        while True:
            m = _TOKEN.search(self.buf, pos)
            if m is None or (m.group().startswith(b'"') and not m.group(1)):
                if len(self.buf) - start > limit or not self.fill():
                    return None
                continue
            pos = m.end()
            tok = m.group()
            if tok in (b"{", b"["):
                depth += 1
            elif tok in (b"}", b"]"):
                depth -= 1
                if depth == 0:
                    return pos
            if pos - start > limit:
                return None

    def boundary_after(self, end: int) -> bool:
        """Whether ``buf[end:]`` continues the array: ``,`` then an object, or the closing ``]``."""
        pos = self.skip_space(end)
        if self.buf.startswith(b"]", pos):
            return True
        if not self.buf.startswith(b",", pos):
            return False
        return self.buf.startswith(b"{", self.skip_space(pos + 1))

    def after_item(self, end: int) -> int:
        """Where the next item (or the closing ``]``) starts, given a boundary after ``end``."""
        pos = self.skip_space(end)
        return self.skip_space(pos + 1) if self.buf.startswith(b",", pos) else pos

    def resync(self, pos: int) -> int | None:
        """Index of the next item start (``{"`` after ``},``) at or after ``pos``; None at end of stream."""
        while True:
            m = _NEXT_ITEM.search(self.buf, pos)
            if m is not None:
                return m.start(1)
            pos = self.drop_before(max(pos, len(self.buf) - 16))
            if not self.fill():
                return None


def iter_namuwiki(path: str | os.PathLike[str], source: str = "namuwiki",
                  max_page_chars: int = DEFAULT_MAX_PAGE_CHARS) -> Iterator[Document | Skip]:
    """Documents of the namespace-0 pages; filtered pages, bad items and truncated pages as :class:`Skip`."""
    with Dump(path) as dump:
        scan = _Scanner(dump)
        unit = "file byte" if dump.compression is None else f"byte of the decompressed {dump.compression} stream"
        count = 0
        try:
            pos = scan.skip_space(0)
            if scan.buf.startswith(b"\xef\xbb\xbf", pos):
                pos = scan.skip_space(pos + 3)
            if scan.buf[pos:pos + 1] != b"[":
                found = scan.buf[pos:pos + 1].decode("latin-1") or "nothing"
                raise InputError(f"{path}: expected a JSON array of Namuwiki documents, found {found!r} at byte {pos}")
            pos = scan.skip_space(pos + 1)
            while True:
                pos = scan.drop_before(pos, keep=BLOCK)
                if scan.buf.startswith(b"]", pos):
                    return
                if pos >= len(scan.buf):
                    yield Skip("truncated", f"after item {count}, {unit} {scan.base + pos}", "the file ends before the closing ']'")
                    return
                count += 1
                at = f"item {count} at {unit} {scan.base + pos}"
                end = scan.item_end(pos, max_page_chars * 8 + BLOCK) if scan.buf.startswith(b"{", pos) else None
                record = _BAD
                if end is not None:
                    record = yield from _decode(scan.buf[pos:end], at, scan.base + pos, unit)
                if record is _BAD or record is _BAD_UTF8:
                    # A bad byte (>= 0x80) cannot be a quote, backslash or bracket, so the scanner found the item's
                    # true end: go on from there. Other damage can misplace the end (an unescaped quote flips what
                    # is string and what is not), so the scan resyncs at the next item start instead.
                    at_end = record is _BAD_UTF8 and end is not None and scan.boundary_after(end)
                    nxt = scan.after_item(end) if at_end and end is not None else scan.resync(pos + 1)
                    if end is None:
                        reason = "truncated" if nxt is None and scan.eof else "malformed_json"
                        yield Skip(reason, at, "the file ends inside this item" if reason == "truncated" else "not a complete JSON object")
                    if nxt is None:
                        return
                    pos = nxt
                    continue
                yield from _document(record, count, source, max_page_chars, at)
                pos = scan.skip_space(end)
                if scan.buf.startswith(b",", pos):
                    pos = scan.skip_space(pos + 1)
                elif pos < len(scan.buf) and not scan.buf.startswith(b"]", pos):
                    yield Skip("malformed_json", f"after item {count}, {unit} {scan.base + pos}", "expected ',' or ']'")
                    nxt = scan.resync(max(pos - 1, 0))
                    if nxt is None:
                        return
                    pos = nxt
        except _ReadError as exc:
            yield Skip("truncated", f"after item {count}, near file byte {dump.raw_offset()}", str(exc))


def _decode(raw: bytes, at: str, offset: int, unit: str) -> Generator[Skip, None, object]:
    """The item as a Python object, or ``_BAD_UTF8`` / ``_BAD`` after yielding the Skip that says why."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        yield Skip("invalid_utf8", at, f"bad byte at {unit} {offset + exc.start}")
        return _BAD_UTF8
    try:
        return json.loads(text)
    except ValueError as exc:
        yield Skip("malformed_json", at, str(exc).splitlines()[0][:200])
        return _BAD


def _document(item: object, count: int, source: str, max_page_chars: int, at: str) -> Iterator[Document | Skip]:
    if not isinstance(item, dict):
        yield Skip("bad_record", at, "not a JSON object")
        return
    title = str(item.get("title") or "").strip()
    text = item.get("text")
    where = f"item {count} ({title or 'untitled'})"
    namespace = str(item.get("namespace", "0")).strip()
    if namespace not in ("0", ""):
        yield Skip("namespace", where)
        return
    if not isinstance(text, str):
        yield Skip("bad_record", where, "field 'text' missing or not a string")
        return
    if not title or not text.strip():
        yield Skip("empty", where, "no title" if not title else "no text")
        return
    if _REDIRECT.match(text):
        yield Skip("redirect", where)
        return
    if title.endswith("(동음이의어)") or _DISAMBIG.search(text):
        yield Skip("disambiguation", where)
        return
    if len(text) > max_page_chars:
        log.warning("%s: %s: %d characters, cut to corpus.max_page_chars=%d", source, where, len(text), max_page_chars)
        yield Skip("page_truncated", where, f"{len(text)} characters, the first {max_page_chars} kept")
        text = text[:max_page_chars]
    sections, notes = parse_namumark(text)
    if not sections:
        yield Skip("no_content", where)
        return
    yield Document(id=title, title=title, source=source, url=URL_PREFIX + quote(title), sections=sections, footnotes=notes)

"""Stream a MediaWiki export dump (``pages-articles*.xml`` or ``.bz2``, multistream included) page by page.

The reader cuts the byte stream at ``<page>``/``</page>`` and parses each page on its own. Memory stays at one
page plus one read block, and a malformed page or a bad byte costs that page only: the next ``<page>`` is a
clean place to resume, which a single document-wide XML parser cannot offer.
"""

from __future__ import annotations

import logging
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from urllib.parse import quote

from krqa.corpus.document import Document, Skip
from krqa.corpus.fileio import READ_ERRORS, Dump
from krqa.corpus.wikitext import clean_wikitext

log = logging.getLogger(__name__)
BLOCK = 1 << 20
PAGE_OPEN = b"<page>"
PAGE_CLOSE = b"</page>"
DUMP_END = b"</mediawiki>"
"""The tags a page and the dump are cut by; the piece planner cuts byte ranges and finishes pages by them."""
_BASE = re.compile(rb"<base>(.*?)</base>", re.S)
_REDIRECT_TEXT = re.compile(r"^\s*#\s*(?:redirect|넘겨주기)", re.I)
DEFAULT_BASE = "https://ko.wikipedia.org/wiki/"
DEFAULT_MAX_PAGE_CHARS = 1_000_000


def url_prefix(header: bytes) -> str:
    """The article URL prefix from a dump header's ``<base>`` (``https://ko.wikipedia.org/wiki/``)."""
    match = _BASE.search(header)
    if not match:
        return DEFAULT_BASE
    base = match.group(1).decode("utf-8", "replace").strip()
    cut = base.find("/wiki/")
    return base[: cut + len("/wiki/")] if cut >= 0 else DEFAULT_BASE


def dump_url_prefix(path: str | os.PathLike[str]) -> str:
    """The URL prefix of a dump from its header, for a reader that starts mid-dump (a piece)."""
    first = next(iter_pages(path), None)
    return url_prefix(first[1]) if isinstance(first, tuple) else DEFAULT_BASE


def iter_pages(path: str | os.PathLike[str]) -> Iterator[tuple[int, bytes] | Skip]:
    """Yield ``(decompressed_offset, page_bytes)`` for each ``<page>…</page>``, or a :class:`Skip` for a
    span that cannot be a page (unclosed page, cut-off stream); the header (siteinfo) comes first as
    offset ``-1``."""
    with Dump(path) as dump:
        buf = b""
        base = 0  # decompressed offset of buf[0]
        pos = 0  # consumed up to here; buf is compacted only when a new block arrives
        header_sent = False
        ended = False
        eof = False
        while True:
            start = buf.find(PAGE_OPEN, pos)
            if not header_sent and (start >= 0 or eof):
                yield (-1, buf[: start if start >= 0 else len(buf)])
                header_sent = True
            if start >= 0:
                end = buf.find(PAGE_CLOSE, start + len(PAGE_OPEN))
                if end >= 0:
                    nxt = buf.find(PAGE_OPEN, start + len(PAGE_OPEN), end)
                    if nxt >= 0:
                        yield Skip("malformed_xml", f"byte {base + start}", "<page> without </page>")
                        pos = nxt
                        continue
                    stop = end + len(PAGE_CLOSE)
                    yield (base + start, buf[start:stop])
                    pos = stop
                    continue
                pos = start
            elif header_sent:
                ended = ended or DUMP_END in buf[max(0, pos - len(DUMP_END)) :]
                pos = max(pos, len(buf) - len(DUMP_END))
            if eof:
                if start >= 0 or not ended:
                    at = base + max(start, 0)
                    yield Skip("truncated", f"byte {at}", "dump ends inside a page" if start >= 0 else "dump ends before </mediawiki>")
                return
            try:
                # read1: one decompression step, so a damaged stream costs only what is past the damage
                block = dump.stream.read1(BLOCK)
            except READ_ERRORS as exc:
                where = f"byte {base + len(buf)} (file offset {dump.raw_offset()})" if dump.compression else f"byte {base + len(buf)}"
                yield Skip("truncated", where, f"{type(exc).__name__}: {exc}")
                return
            if not block:
                eof = True
            if header_sent:
                buf, base, pos = buf[pos:], base + pos, 0
            buf += block


def _field(page: ET.Element, name: str) -> str:
    el = page.find(name)
    return (el.text or "") if el is not None else ""


def iter_mediawiki(path: str | os.PathLike[str], source: str = "kowiki",
                   max_page_chars: int = DEFAULT_MAX_PAGE_CHARS) -> Iterator[Document | Skip]:
    """Documents for namespace-0 articles; redirects, disambiguation pages, other namespaces and bad pages
    come back as :class:`Skip` with the page id (or byte offset when the page is unreadable). Wikitext over
    ``max_page_chars`` is cut to it (a ``page_truncated`` record says so) before it is parsed."""
    prefix = DEFAULT_BASE
    for item in iter_pages(path):
        if isinstance(item, Skip):
            yield item
            continue
        offset, raw = item
        if offset < 0:
            prefix = url_prefix(raw)
            continue
        yield from page_record(raw, offset, prefix, source, max_page_chars=max_page_chars)


def page_record(raw: bytes, offset: int, prefix: str = DEFAULT_BASE, source: str = "kowiki", at: str = "byte",
                max_page_chars: int = DEFAULT_MAX_PAGE_CHARS) -> list[Document | Skip]:
    """One ``<page>…</page>`` span as a document or the reason it is not one (a cut page gives a
    ``page_truncated`` record, then its document); ``at`` names what ``offset`` counts (a parallel build
    reading a piece of a compressed dump says where that piece starts)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [Skip("invalid_utf8", f"{at} {offset + exc.start}", "page is not valid UTF-8")]
    try:
        page = ET.fromstring(text)
    except ET.ParseError as exc:
        return [Skip("malformed_xml", f"{at} {offset}", str(exc))]
    page_id = _field(page, "id").strip() or f"@{offset}"
    title = _field(page, "title").strip()
    where = f"page id {page_id} ({title or 'untitled'}, {at} {offset})"
    if _field(page, "ns").strip() not in ("0", ""):
        return [Skip("namespace", where)]
    rev = page.find("revision")
    wikitext = _field(rev, "text") if rev is not None else ""
    if page.find("redirect") is not None or _REDIRECT_TEXT.match(wikitext):
        return [Skip("redirect", where)]
    if not title or not wikitext.strip():
        return [Skip("empty", where, "no title" if not title else "no text")]
    if "(동음이의)" in title:
        return [Skip("disambiguation", where)]
    out: list[Document | Skip] = []
    if len(wikitext) > max_page_chars:
        log.warning("%s: %s: %d characters, cut to corpus.max_page_chars=%d", source, where, len(wikitext), max_page_chars)
        out.append(Skip("page_truncated", where, f"{len(wikitext)} characters, the first {max_page_chars} kept"))
        wikitext = wikitext[:max_page_chars]
    sections, disambiguation = clean_wikitext(wikitext)
    if disambiguation:
        return [*out, Skip("disambiguation", where)]
    if not sections:
        return [*out, Skip("no_content", where)]
    return [*out, Document(id=page_id, title=title, source=source, url=prefix + quote(title.replace(" ", "_")), sections=sections)]

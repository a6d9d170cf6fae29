"""Read wikiextractor output: ``<doc id="…" url="…" title="…">`` … ``</doc>`` blocks of plain article text.

wikiextractor writes a tree of files (``AA/wiki_00`` …, ``.bz2`` with ``--compress``); copies are often
concatenated into one file or recompressed (``.xz``, ``.gz``). Both a tree and a single file are read here,
compression told by magic bytes. A block is cut by its ``<doc``/``</doc>`` lines, so a damaged block costs
that block only: the next ``<doc`` line is a clean place to resume. Positions name the file (relative to the
tree) and the line of the decompressed text where the block starts.

The body's first line repeats the title. wikiextractor 3.x keeps section headings as their own line with a
``.`` appended (``생애.``) and only when text follows them; such lines become section paths (flat, since
wikiextractor drops the heading levels; headings on consecutive lines, which wikiextractor emits for a
heading directly followed by a subheading, are joined as one path). Older output without headings has none.
"""

from __future__ import annotations

import codecs
import html
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from krqa.corpus.document import SECTION_SEP, Document, Skip, tidy
from krqa.corpus.fileio import READ_ERRORS, Dump, tree_files
from krqa.errors import InputError

log = logging.getLogger(__name__)
DEFAULT_MAX_PAGE_CHARS = 1_000_000
LINE_LIMIT = 1 << 20
"""Longest line read at once; a longer one (binary junk, a runaway line) is read in parts."""
_OPEN = b"<doc"
_CLOSE = b"</doc>"
_ID = re.compile(r'\bid="([^"]*)"')
_URL = re.compile(r'\burl="([^"]*)"')
_TITLE = re.compile(r'\btitle="(.*)"\s*/?>\s*$')
_FORMULA = re.compile(r"\bformula_\d+\b")

_MAX_HEADING_CHARS = 40
"""Headings of the 2022 dump: 96% have up to 20 characters, 99% up to 40; longer candidates were mostly
one-line notes (timelines, episode summaries)."""
_SENTENCE_INSIDE = re.compile(r"[.!?。][\s\"'”’)]|(?:[었았였했겠]|[이한된있없니])다[\s,(]")
"""A sentence end inside the line: punctuation before a space, or a predicate in 다 before a comma, space or
parenthesis (``작다(물론 …)``); nouns in 다 (``바다``, ``캐나다``) do not match."""
_TRAILING_PAREN = re.compile(r"\s*\([^()]*\)$")
_SENTENCE_END = re.compile(r"(?:[다까죠]|[^개]요|[하되]?[함됨]|[았었였했겠않있없]음)$")
"""Endings of a Korean sentence's last word (declarative 다, question 까, 요 except 개요, the nominalised
함/됨/…었음 of note style); a heading ends in a noun (``생애``, ``어린 시절``, ``죽음``). Measured on the
2022 dump (AJ: 11k candidate lines): with these endings and the structural rules below, the sampled
misreadings were nominal one-line notes such as ``본명은 장혜원.``, which read fine as a section name."""
_HANGUL = re.compile(r"[가-힣]")


def iter_wikiextractor(path: str | os.PathLike[str], source: str = "wikiextractor",
                       max_page_chars: int = DEFAULT_MAX_PAGE_CHARS) -> Iterator[Document | Skip]:
    """Documents of a wikiextractor tree (every regular non-hidden file, in sorted relative-path order) or
    of one file of concatenated ``<doc>`` blocks, plain or compressed. Empty blocks (redirects, stubs) come
    back as ``no_content`` records, damaged ones as error records with file and line; a file in the tree
    that is not wikiextractor output costs one record naming it."""
    path = Path(path)
    if path.is_dir():
        files = tree_files(path)
        if not files:
            raise InputError(f"{path}: empty folder: no wikiextractor files (AA/wiki_00 …) under it")
        for file in files:
            yield from iter_file(file, file.relative_to(path).as_posix(), source, max_page_chars)
    elif path.is_file():
        yield from iter_file(path, path.name, source, max_page_chars)
    else:
        raise InputError(f"{path}: corpus source not found")


def iter_file(file: Path, label: str, source: str = "wikiextractor", max_page_chars: int = DEFAULT_MAX_PAGE_CHARS,
              start: int = 0, end: int | None = None, first_line: int = 1) -> Iterator[Document | Skip]:
    """Records of one file, or of bytes ``[start, end)`` of a plain file cut at a ``<doc`` line (a piece of a
    parallel build, whose line numbers start at ``first_line``); ``label`` names the file in positions."""
    with Dump(file) as dump:
        stream = dump.stream
        if start:
            stream.seek(start)
        lines = _lines(stream, None if end is None else end - start)
        at_eof = end is None or end >= file.stat().st_size
        reader = _Blocks(label, source, max_page_chars, first_line, whole_file=start == 0, at_eof=at_eof)
        try:
            yield from reader.read(lines)
        except READ_ERRORS as exc:
            lost = f"; the block from line {reader.block_line} is lost" if reader.block_line else ""
            yield Skip("truncated", f"{label} after line {reader.lineno - 1}, near file byte {dump.raw_offset()}",
                       f"{type(exc).__name__}: {exc}{lost}")


def _lines(stream, budget: int | None) -> Iterator[bytes]:
    """Lines of at most :data:`LINE_LIMIT` bytes (a longer line comes in parts), up to ``budget`` bytes."""
    while budget is None or budget > 0:
        line = stream.readline(LINE_LIMIT if budget is None else min(LINE_LIMIT, budget))
        if not line:
            return
        if budget is not None:
            budget -= len(line)
        yield line


@dataclass
class _Block:
    line: int
    header: bytes
    body: list[bytes]
    size: int = 0
    over: bool = False


class _Blocks:
    """The ``<doc>`` state machine over one file's lines; ``lineno`` is the number of the next line."""

    def __init__(self, label: str, source: str, max_page_chars: int, first_line: int, whole_file: bool, at_eof: bool):
        self.label, self.source, self.max_page_chars = label, source, max_page_chars
        self.lineno = first_line
        self.whole_file, self.at_eof = whole_file, at_eof
        self.block_line = 0
        self.byte_cap = 4 * max_page_chars + 4096  # UTF-8 is at most 4 bytes a character

    def read(self, lines: Iterable[bytes]) -> Iterator[Document | Skip]:
        block: _Block | None = None
        stray_at = 0
        seen_doc = False
        at_line_start = True
        for raw in lines:
            lineno, starts_line = self.lineno, at_line_start
            at_line_start = raw.endswith(b"\n")
            self.lineno += at_line_start
            if not starts_line:
                if block is not None:
                    self._add(block, raw)
                continue
            if raw.startswith(_OPEN) and raw[4:5] in (b" ", b">", b"\t", b"\n", b"\r"):
                if block is not None:
                    yield Skip("malformed_doc", f"{self.label} line {block.line}", "<doc> without </doc> (the next <doc> comes first)")
                block = _Block(lineno, raw, [])
                self.block_line = lineno
                seen_doc = True
                stray_at = 0
                continue
            if block is not None:
                if raw.rstrip() == _CLOSE:
                    yield from self._record(block)
                    block, self.block_line = None, 0
                else:
                    self._add(block, raw)
                continue
            if not raw.strip():
                continue
            if not seen_doc and self.whole_file:
                what = "a binary file" if _binary(raw) else "its first line is not <doc …>"
                yield Skip("not_wikiextractor", f"{self.label} line {lineno}", f"{what}; the file is left out")
                return
            if not stray_at:
                stray_at = lineno
                yield Skip("malformed_doc", f"{self.label} line {lineno}", "text outside <doc>…</doc>")
        if block is not None:
            first = "the file ends" if self.at_eof else "the next <doc> comes"
            yield Skip("malformed_doc", f"{self.label} line {block.line}", f"<doc> without </doc> ({first} first)")

    def _add(self, block: _Block, raw: bytes) -> None:
        if block.size + len(raw) > self.byte_cap:
            block.over = True
            raw = raw[: max(0, self.byte_cap - block.size)]
        block.body.append(raw)
        block.size += len(raw)

    def _record(self, block: _Block) -> list[Document | Skip]:
        at = f"{self.label} line {block.line}"
        try:
            header = block.header.decode("utf-8")
        except UnicodeDecodeError as exc:
            return [Skip("invalid_utf8", f"{at}, column byte {exc.start}", "<doc> line is not valid UTF-8")]
        doc_id, url, title = _ID.search(header), _URL.search(header), _TITLE.search(header)
        missing = [name for name, m in (("id", doc_id), ("title", title)) if m is None or not m.group(1).strip()]
        if missing:
            return [Skip("malformed_doc", at, f"<doc> without the {missing[0]} attribute")]
        assert doc_id is not None and title is not None
        page_id, name = doc_id.group(1).strip(), html.unescape(title.group(1)).strip()
        where = f"doc id {page_id} ({name}, {at})"
        raw = b"".join(block.body)
        try:
            # a block cut at the byte cap may end inside a character: the incremental decoder holds that back
            text = codecs.getincrementaldecoder("utf-8")().decode(raw, final=not block.over)
        except UnicodeDecodeError as exc:
            line = block.line + 1 + raw.count(b"\n", 0, exc.start)
            return [Skip("invalid_utf8", f"doc id {page_id} ({name}, {self.label} line {line})", "not valid UTF-8")]
        text = html.unescape(text)  # wikiextractor escapes <, > and & in the text as in the title
        out: list[Document | Skip] = []
        if block.over or len(text) > self.max_page_chars:
            log.warning("%s: %s: longer than corpus.max_page_chars=%d, cut", self.source, where, self.max_page_chars)
            out.append(Skip("page_truncated", where, f"over {self.max_page_chars} characters, the first {self.max_page_chars} kept"))
            text = text[: self.max_page_chars]
        sections = split_sections(text, name)
        if not sections:
            return [*out, Skip("no_content", where)]
        link = html.unescape(url.group(1)).strip() if url else ""
        link = link if link.startswith(("http://", "https://")) else ""
        return [*out, Document(id=page_id, title=name, source=self.source, url=link, sections=sections)]


def _binary(line: bytes) -> bool:
    try:
        return "\0" in line.decode("utf-8")
    except UnicodeDecodeError:
        return True


def split_sections(body: str, title: str) -> list[tuple[str, str]]:
    """``(section_path, text)`` pairs of a block's body: the repeated title dropped, ``formula_N``
    placeholders removed, heading lines turned into paths; sections left without text are dropped."""
    lines = [line.strip() for line in body.split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    if lines and lines[0] == title.strip():
        lines.pop(0)
    lines = [_FORMULA.sub("", line).strip() if "formula_" in line else line for line in lines]
    sections: list[tuple[str, str]] = []
    path: list[str] = []
    text: list[str] = []
    heading_run = False
    for i, line in enumerate(lines):
        if is_heading(line, lines[i + 1] if i + 1 < len(lines) else ""):
            if text:
                sections.append((SECTION_SEP.join(path), "\n".join(text)))
                text = []
            path = [*path, line[:-1].strip()] if heading_run else [line[:-1].strip()]
            heading_run = True
            continue
        heading_run = False
        text.append(line)
    if text:
        sections.append((SECTION_SEP.join(path), "\n".join(text)))
    return [(p, cleaned) for p, t in sections if (cleaned := tidy(t))]


def is_heading(line: str, next_line: str) -> bool:
    """Whether a body line is a section heading of wikiextractor 3.x (``생애.``), told from a one-sentence
    paragraph: wikiextractor writes a heading only when text follows it, so the last line and a line before
    a blank are never headings; a heading is short, one clause, and its last word is not a predicate."""
    if not next_line or len(line) > _MAX_HEADING_CHARS or not line.endswith(".") or line.endswith(("..", "…")):
        return False
    head = line[:-1].rstrip()
    if not head or _SENTENCE_INSIDE.search(head) or head[0] in "-*#:;※·•":
        return False
    words = (_TRAILING_PAREN.sub("", head) or head).split()
    last = words[-1].rstrip(")]}」』\"'”’") if words else ""
    if _HANGUL.search(head) is None:
        return len(head.split()) <= 4
    return not _SENTENCE_END.search(last)

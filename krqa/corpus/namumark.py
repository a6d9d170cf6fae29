"""Namumark (Namuwiki's markup) to plain text, written for this project.

Every phase is a single left-to-right pass whose searches only move forward, so the parser runs in linear
time and terminates on any input (the fuzz test feeds it arbitrary text):

1. ``##`` comment lines go;
2. ``{{{ … }}}`` blocks are matched with a stack: ``#!html``/``#!syntax`` blocks are dropped, ``#!wiki`` and
   ``#!folding`` keep their body, size (``+1``) and colour (``#red``) blocks keep their text;
3. footnotes ``[* …]`` are cut out of the body (bracket-matched, so links inside them survive) and kept apart;
4. lines: headings become sections, ``||`` table rows become comma-joined cells, quotes and list markers go;
5. inline: links keep their visible text, files and categories go, macros (``[목차]``, ``[include(…)]``,
   ``[br]``, ...) are resolved, emphasis markers go, struck text (``~~…~~``, ``--…--``) goes with its content.
"""

from __future__ import annotations

import re

from krqa.corpus.document import SECTION_SEP, tidy

_BRACES = re.compile(r"\{\{\{|\}\}\}")
_BRACKETS = re.compile(r"[\[\]]")
_SIZE = re.compile(r"[+-][1-5]\s")
_COLOR = re.compile(r"#(?:[0-9a-zA-Z]{1,20})(?:,#?[0-9a-zA-Z]{1,20})?\s")
_LIST = re.compile(r"(?:\*|[1aAiI]\.(?:#\d{1,6})?)\s?")
_SPECIAL = re.compile(r"\[\[|\[|'''|''|~~|--|__|\^\^|,,|\\")
_CELL_ATTR = re.compile(r"\s*<[^<>\n]{0,80}>")

DROP_LINK_PREFIXES = ("파일:", "file:", "분류:", "category:", "http://", "https://")
MACROS = frozenset(
    {
        "목차", "tableofcontents", "각주", "footnote", "br", "include", "youtube", "kakaotv", "nicovideo", "vimeo",
        "navertv", "age", "dday", "date", "datetime", "pagecount", "clearfix", "ruby", "anchor", "math",
    }
)
KEEP_BODY_BLOCKS = ("#!wiki", "#!folding")
HEADER_SCAN = 400
MAX_LINK_DEPTH = 3
MACRO_NAME_SCAN = 32


def _strip_comments(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if not line.lstrip().startswith("##"))


def _resolve_braces(text: str) -> str:
    tokens = [(m.start(), m.group()) for m in _BRACES.finditer(text)]
    stack: list[int] = []
    match: dict[int, int] = {}
    for pos, tok in tokens:
        if tok == "{{{":
            stack.append(pos)
        elif stack:
            match[stack.pop()] = pos
    out: list[str] = []
    cur = 0
    for pos, tok in tokens:
        if pos < cur:
            continue
        out.append(text[cur:pos])
        cur = pos + 3
        if tok != "{{{" or pos not in match:
            continue
        close = match[pos]
        head = text[cur : min(close, cur + HEADER_SCAN)]
        if head.startswith("#!"):
            if head.startswith(KEEP_BODY_BLOCKS):
                newline = head.find("\n")
                cur = cur + newline + 1 if newline >= 0 else close
            else:
                cur = close + 3
        elif m := _SIZE.match(head) or _COLOR.match(head):
            cur += m.end()
    out.append(text[cur:])
    return "".join(out)


def _extract_footnotes(text: str) -> tuple[str, list[str]]:
    stack: list[int] = []
    match: dict[int, int] = {}
    for m in _BRACKETS.finditer(text):
        if m.group() == "[":
            stack.append(m.start())
        elif stack:
            match[stack.pop()] = m.start()
    body: list[str] = []
    notes: list[str] = []
    cur = 0
    for start in sorted(o for o, c in match.items() if text.startswith("[*", o)):
        if start < cur:
            continue
        end = match[start]
        body.append(text[cur:start])
        note = text[start + 2 : end]
        if note and not note[0].isspace():
            note = note.partition(" ")[2]
        notes.append(note)
        cur = end + 1
    body.append(text[cur:])
    return "".join(body), notes


def _link(content: str, depth: int) -> str:
    target, bar, display = content.partition("|")
    target = target.strip()
    if target.lower().startswith(DROP_LINK_PREFIXES):
        return _inline(display, depth + 1) if bar and target.lower().startswith(("http://", "https://")) else ""
    if bar:
        return _inline(display, depth + 1)
    return target.split("#", 1)[0] if not target.startswith("#") else target[1:]


def _macro(s: str, start: int, close: int) -> str | None:
    """The rendering of the macro ``s[start:close]`` (``[목차]``, ``[br]``, ``[ruby(…)]`` …), or None when it is
    not one; the name is read from at most :data:`MACRO_NAME_SCAN` characters, so a non-macro costs O(1)."""
    name, paren, _ = s[start : min(close, start + MACRO_NAME_SCAN)].partition("(")
    key = name.strip().lower()
    if key not in MACROS or (not paren and close > start + MACRO_NAME_SCAN):
        return None
    if key == "br":
        return "\n"
    if key == "ruby" and paren:
        return s[start:close].partition("(")[2].rstrip(")").split(",", 1)[0]
    return ""


def _inline(s: str, depth: int = 0) -> str:
    """One pass over a line; ``nxt`` caches the next closer of each kind so no search is ever repeated."""
    if depth > MAX_LINK_DEPTH:
        return s
    cache: dict[str, int] = {}

    def nxt(tok: str, frm: int) -> int:
        found = cache.get(tok)
        if found is None or (found != -1 and found < frm):
            found = s.find(tok, frm)
            cache[tok] = found
        return found

    out: list[str] = []
    i = 0
    n = len(s)
    while i < n:
        m = _SPECIAL.search(s, i)
        if m is None:
            out.append(s[i:])
            break
        out.append(s[i : m.start()])
        tok = m.group()
        i = m.end()
        if tok == "[[":
            close = nxt("]]", i)
            if close >= 0:
                out.append(_link(s[i:close], depth))
                i = close + 2
        elif tok == "[":
            # Only a bounded head of the text up to the closer is looked at unless it is consumed: with one ']'
            # at the end of the page, slicing up to it at every '[' costs quadratic time ("[가" * N + "]").
            close = nxt("]", i)
            if close >= 0 and s.startswith("*", i):
                i = close + 1
            elif close >= 0 and (rendered := _macro(s, i, close)) is not None:
                out.append(rendered)
                i = close + 1
            else:
                out.append("[")
        elif tok in ("~~", "--"):
            close = nxt(tok, i)
            if close >= 0:
                i = close + 2
        elif tok == "\\":
            if i < n:
                out.append(s[i])
                i += 1
        # emphasis markers (''' '' __ ^^ ,,) are dropped and their content kept
    return "".join(out)


def _heading(line: str) -> tuple[int, str] | None:
    level = len(line) - len(line.lstrip("="))
    trail = len(line) - len(line.rstrip("="))
    if not 1 <= level <= 6 or level != trail or len(line) <= 2 * level:
        return None
    inner = line[level:-level]
    if not inner[:1] in (" ", "#") or not inner[-1:] in (" ", "#"):
        return None
    title = inner.strip().strip("#").strip()
    return (level, title) if title else None


def _table_row(row: str) -> str:
    cells = []
    for cell in row.split("||")[1:-1]:
        while m := _CELL_ATTR.match(cell):
            cell = cell[m.end() :]
        cell = tidy(_inline(cell.strip()))
        if cell:
            cells.append(cell)
    return ", ".join(cells)


def _strip_line_markers(line: str) -> str:
    while line.startswith(">"):
        line = line[1:].lstrip()
    if m := _LIST.match(line):
        line = line[m.end() :]
    return line


def parse_namumark(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """Return ``(sections, footnotes)``: sections as ``(path, text)`` with the lead as ``""``."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _resolve_braces(_strip_comments(text))
    text, raw_notes = _extract_footnotes(text)
    sections: list[tuple[str, str]] = []
    path: list[tuple[int, str]] = []
    buf: list[str] = []
    pending_row: list[str] = []

    def flush() -> None:
        body = tidy("\n".join(buf))
        buf.clear()
        if body:
            sections.append((SECTION_SEP.join(t for _, t in path), body))

    for raw in text.split("\n"):
        line = raw.strip()
        if pending_row:
            pending_row.append(line)
            if line.endswith("||") or not line:
                buf.append(_table_row(" ".join(pending_row) + ("" if line.endswith("||") else "||")))
                pending_row.clear()
            continue
        if not line:
            buf.append("")
        elif (head := _heading(line)) is not None:
            flush()
            level, title = head
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, tidy(_inline(title)).replace("\n", " ")))
        elif line.startswith("||"):
            if line.endswith("||") and len(line) > 2:
                buf.append(_table_row(line))
            else:
                pending_row.append(line)
        elif len(line) >= 4 and not line.strip("-"):
            continue
        else:
            buf.append(_inline(_strip_line_markers(line)))
    if pending_row:
        buf.append(_table_row(" ".join(pending_row) + "||"))
    flush()
    notes = [note for note in (tidy(_inline(n)) for n in raw_notes) if note]
    return sections, notes

"""Defuse unclosed wikitext constructs before mwparserfromhell sees them, so parsing stays linear in page size.

mwparserfromhell's tokenizer tries every opener (``{{``, ``[[``, ``[http://``, ``{|``, ``<ref>``, ``<!--``, a tag
start) as a construct and, when no closer follows, fails the route and retries from the next character: a
page made of N unclosed openers costs N scans to the end of the page (upstream issue #364; 100 KB took
15 s). One linear pass here matches openers to closers with a stack per kind, and every opener left unmatched
has its first character replaced by an HTML entity. The tokenizer then reads it as plain text at once, and
the cleaned text is what it produced after its failed tries: an unclosed ``[[a|`` was always shown as text.
Comments and the contents of tags the parser never looks into (``<nowiki>``, ``<pre>``, …) are skipped whole,
as the tokenizer skips them, so a closer hidden there does not count.
"""

from __future__ import annotations

import re
import string

from mwparserfromhell.definitions import PARSER_BLACKLIST, SINGLE

_TOKEN = re.compile(
    r"\{\{+|\}\}+|\[\[|\]\]|<!--|^[ \t]*\{\||^[ \t]*\|\}|\n|\]"
    r"|\[(?=(?:[A-Za-z][A-Za-z0-9+.-]{0,20}:)?//|mailto:|news:)"
    r"|<(/?)([A-Za-z][A-Za-z0-9]{0,30})",
    re.M,
)
_TAG_END = re.compile(r"[^<>]*(>?)")
_ESCAPE = {"{": "&#123;", "[": "&#91;", "<": "&lt;"}
_OPAQUE = frozenset(PARSER_BLACKLIST) | {"nowiki", "pre", "math", "chem", "syntaxhighlight", "source", "score"}
_SINGLE = frozenset(SINGLE)
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


class _Finder:
    """``str.find`` for needles searched again and again from positions that only move forward: the last
    answer is reused while it is still ahead, and a needle once missing stays missing, so the searches of a
    whole pass cost one scan per needle instead of one per opener."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.last: dict[str, int] = {}

    def find(self, needle: str, pos: int) -> int:
        found = self.last.get(needle)
        if found is None or (found != -1 and found < pos):
            found = self.text.find(needle, pos)
            self.last[needle] = found
        return found


def unclosed_openers(text: str) -> list[tuple[int, int]]:
    """``(position, length)`` of the opener characters in ``text`` that no closer matches, in one pass."""
    braces: list[list[int]] = []  # [position, braces still open]
    stacks: dict[str, list[int]] = {"[[": [], "{|": []}
    tags: dict[str, list[int]] = {}
    line_links: list[int] = []
    bad: list[int] = []
    lower = _Finder(text.translate(_ASCII_LOWER))  # same length as text, unlike str.lower()
    finder = _Finder(text)
    pos = 0
    while (m := _TOKEN.search(text, pos)) is not None:
        tok = m.group()
        pos = m.end()
        if tok[0] == "{" and tok[1] == "{":
            braces.append([m.start(), len(tok)])
        elif tok[0] == "}" and tok[1] == "}":
            _close_braces(braces, len(tok))
        elif tok == "[[":
            stacks[tok].append(m.start())
        elif tok == "]]":
            if stacks["[["]:
                stacks["[["].pop()
        elif tok == "<!--":
            close = finder.find("-->", pos)
            if close < 0:
                bad.append(m.start())
            else:
                pos = close + 3
        elif tok.lstrip(" \t") == "{|":
            stacks["{|"].append(m.end() - 2)
        elif tok.lstrip(" \t") == "|}":
            if stacks["{|"]:
                stacks["{|"].pop()
        elif tok == "\n":
            bad.extend(line_links)
            line_links.clear()
        elif tok == "]":
            if line_links:
                line_links.pop()
        elif tok == "[":
            line_links.append(m.start())
        else:
            pos = _tag(text, lower, m, tags, bad, pos)
    bad.extend(line_links)
    for stack in (*stacks.values(), *tags.values()):
        bad.extend(stack)
    spans = [(at, 1) for at in bad]
    spans += [(at, left) for at, left in braces if left >= 2]
    return sorted(spans)


def _close_braces(braces: list[list[int]], count: int) -> None:
    """A run of closing braces closes the innermost open runs (``}}}}}`` closes ``{{{`` and ``{{``)."""
    while count >= 2 and braces:
        top = braces[-1]
        if count >= top[1]:
            count -= top[1]
            braces.pop()
        else:
            top[1] -= count
            count = 0


def _tag(text: str, lower: _Finder, m: re.Match[str], tags: dict[str, list[int]], bad: list[int], pos: int) -> int:
    """A ``<name`` or ``</name``: an incomplete tag start is an unclosed opener; an opaque tag's body is skipped."""
    closing, name = m.group(1), m.group(2).lower()
    end = _TAG_END.match(text, pos)
    assert end is not None
    if not end.group(1):
        if not closing:
            bad.append(m.start())
        return pos
    if closing:
        if tags.get(name):
            tags[name].pop()
        return pos
    if text[end.end() - 2] == "/" or name in _SINGLE:
        return pos
    if name in _OPAQUE:
        close = lower.find(f"</{name}", end.end())
        if close < 0:
            bad.append(m.start())
            return pos
        return close
    tags.setdefault(name, []).append(m.start())
    return pos


def defuse_wikitext(text: str) -> str:
    """``text`` with the first character of every unclosed opener written as an HTML entity."""
    spans = unclosed_openers(text)
    if not spans:
        return text
    parts: list[str] = []
    cur = 0
    for at, length in spans:
        parts.append(text[cur:at])
        parts.append(_ESCAPE[text[at]] * length)
        cur = at + length
    parts.append(text[cur:])
    return "".join(parts)

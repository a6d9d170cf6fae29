"""The unit every reader yields: one cleaned article, split into titled sections.

Readers report pages they could not or should not use as :class:`Skip` records instead of raising, so a
bad page in the middle of a multi-gigabyte dump costs one page, not the whole build.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SECTION_SEP = " > "
_WEB_URL = re.compile(r"https?://[^\s\x00-\x1f\x7f/?#\\]+(?:[/?#][^\s\x00-\x1f\x7f]*)?", re.I)


def web_url(url: str) -> str:
    """``url`` when it is a plain http(s) URL with a host, else ``""``. Corpus URLs end up as links in the
    service's page and in citations: a ``javascript:`` (or ``data:``, or a scheme hidden behind control
    characters, which browsers strip) link from a dump would run script in the page's origin when clicked."""
    url = url.strip()
    return url if _WEB_URL.fullmatch(url) else ""


@dataclass
class Document:
    """A cleaned article. ``sections`` holds ``(section_path, text)`` pairs in reading order; the lead
    section's path is ``""`` and nested headings are joined with :data:`SECTION_SEP`."""

    id: str
    title: str
    source: str
    url: str = ""
    sections: list[tuple[str, str]] = field(default_factory=list)
    footnotes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.url = web_url(self.url)

    @property
    def text(self) -> str:
        return "\n\n".join(text for _, text in self.sections)


FILTER_REASONS = ("redirect", "disambiguation", "namespace", "no_content", "page_truncated")
"""Pages left out (or, for ``page_truncated``, cut to ``corpus.max_page_chars``) by design, not errors:
``--strict`` ignores these."""


@dataclass
class Skip:
    """A page that did not become a document: ``reason`` is a short key, ``position`` says where
    (page id, title, item number, byte offset) so the user can find it in the dump."""

    reason: str
    position: str
    detail: str = ""

    @property
    def is_error(self) -> bool:
        return self.reason not in FILTER_REASONS

    def to_json(self) -> dict[str, str]:
        return {"reason": self.reason, "position": self.position, "detail": self.detail}

    def __str__(self) -> str:
        return f"{self.reason} at {self.position}" + (f": {self.detail}" if self.detail else "")


_REMNANTS = re.compile(r"\[\[+|\]\]+|\{\{+|\}\}+|'{2,}|\|\|+|\[\*|</?ref\b[^>]{0,200}>?|<!--|-->")
_REMNANT_CHARS = re.compile(r"[\[\]{}|']")
_MAX_PASSES = 8
"""Removing one remnant can join its neighbours into another (``{[*{`` -> ``{{``); input built to need more
passes than this is soup, and loses its bracket characters instead."""
_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")


def tidy(text: str) -> str:
    """Last line of defence after a markup parser: strip unbalanced markup that the parser had to leave as
    text (an unclosed ``[[`` or ``'''``) and normalise whitespace, so no chunk ever shows raw markup."""
    for _ in range(_MAX_PASSES):
        cleaned = _REMNANTS.sub("", text)
        if cleaned == text:
            break
        text = cleaned
    else:
        text = _REMNANT_CHARS.sub("", text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


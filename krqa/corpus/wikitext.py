"""Wikitext to plain text with mwparserfromhell: one parse and one linear walk over the node tree per page.

Unclosed openers are defused first (:mod:`krqa.corpus.wikidefuse`), which keeps the parse linear in page size.

Templates (infoboxes included), references, tables, files, categories, interlanguage links, comments and
magic words are dropped; link text is kept; headings become the section structure.
"""

from __future__ import annotations

import re

import mwparserfromhell
from mwparserfromhell.nodes import Comment, ExternalLink, Heading, HTMLEntity, Tag, Template, Text, Wikilink

from krqa.corpus.document import SECTION_SEP, tidy
from krqa.corpus.wikidefuse import defuse_wikitext

DROP_LINK_NAMESPACES = frozenset(
    {"파일", "file", "그림", "image", "분류", "category", "media", "미디어", "틀", "template", "위키백과", "wikipedia"}
)
DROP_TAGS = frozenset(
    {
        "ref", "references", "table", "gallery", "math", "chem", "score", "syntaxhighlight", "source", "timeline",
        "imagemap", "templatedata", "graph", "mapframe", "maplink", "noinclude", "includeonly", "inputbox",
        "categorytree", "hiero", "poem_ref", "style", "script",
    }
)
LIST_MARKUP = frozenset({"*", "#", ":", ";"})
DROP_SECTIONS = frozenset(
    {
        "각주", "주석", "출처", "참고 문헌", "참고문헌", "외부 링크", "외부링크", "같이 보기", "같이보기", "관련 항목",
        "references", "notes", "external links", "see also", "further reading",
    }
)
DISAMBIG_TEMPLATES = ("동음이의", "disambig", "disambiguation", "dab", "hndis", "geodis")
_INTERLANG = re.compile(r"^:?[a-z]{2,3}(?:-[a-z0-9]{1,8}){0,2}:", re.ASCII)
_MAGIC = re.compile(r"__[A-Z]{3,20}__")


def is_disambiguation_template(name: str) -> bool:
    key = name.strip().lower().replace("_", " ")
    key = key.split(":", 1)[1].strip() if key.startswith(("틀:", "template:")) else key
    return key.startswith(DISAMBIG_TEMPLATES)


def _link_text(node: Wikilink, out: list[str]) -> None:
    title = str(node.title).strip()
    if ":" in title:
        prefix = title.lstrip(":").split(":", 1)[0].strip().lower()
        if prefix in DROP_LINK_NAMESPACES or _INTERLANG.match(title):
            return
    if node.text is not None:
        _render(node.text.nodes, out)
    else:
        out.append(title.lstrip(":"))


def _render(nodes: list, out: list[str]) -> None:
    for node in nodes:
        kind = type(node)
        if kind is Text:
            out.append(node.value)
        elif kind is Wikilink:
            _link_text(node, out)
        elif kind is Tag:
            name = str(node.tag).strip().lower()
            if name in DROP_TAGS:
                continue
            if name == "br" or node.wiki_markup in LIST_MARKUP:
                out.append("\n" if name == "br" else "")
            elif node.contents is not None:
                _render(node.contents.nodes, out)
        elif kind is ExternalLink:
            if node.title is not None:
                _render(node.title.nodes, out)
        elif kind is HTMLEntity:
            out.append(node.normalize())
        elif kind is Heading:
            _render(node.title.nodes, out)
        # Templates, comments, arguments and anything unknown carry no prose.


def _category_is_disambiguation(node: Wikilink) -> bool:
    title = str(node.title).strip()
    return title.lower().startswith(("분류:", "category:")) and "동음이의" in title


def clean_wikitext(wikitext: str) -> tuple[list[tuple[str, str]], bool]:
    """Return ``(sections, is_disambiguation)``; sections are ``(path, text)`` with the lead as ``""``.

    The walk is flat over top-level nodes (headings only occur there), so each page costs one parse plus
    one pass; reference-type sections (각주, 외부 링크, ...) are dropped whole.
    """
    code = mwparserfromhell.parse(defuse_wikitext(wikitext))
    sections: list[tuple[str, str]] = []
    path: list[tuple[int, str]] = []
    buf: list[str] = []
    disambiguation = False
    dropping_level = 0

    def flush() -> None:
        text = tidy(_MAGIC.sub("", "".join(buf)))
        buf.clear()
        if text and not dropping_level:
            sections.append((SECTION_SEP.join(t for _, t in path), text))

    for node in code.nodes:
        kind = type(node)
        if kind is Heading:
            flush()
            out: list[str] = []
            _render(node.title.nodes, out)
            title = tidy("".join(out)).replace("\n", " ")
            level = node.level
            while path and path[-1][0] >= level:
                path.pop()
            if dropping_level and level <= dropping_level:
                dropping_level = 0
            if not dropping_level and title.lower() in DROP_SECTIONS:
                dropping_level = level
            path.append((level, title))
        elif kind is Template:
            if not disambiguation and is_disambiguation_template(str(node.name)):
                disambiguation = True
        elif kind is Comment:
            continue
        elif kind is Wikilink and _category_is_disambiguation(node):
            disambiguation = True
        elif not dropping_level:
            _render([node], buf)
    flush()
    return sections, disambiguation

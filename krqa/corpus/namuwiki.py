"""Stream the Namuwiki dump (one JSON array of ``{namespace, title, text, contributors}``) with ijson.

ijson's C backend walks the array item by item, so memory holds one document whatever the dump size. A
damaged stream (array cut short, broken JSON, bad bytes) ends the read with a :class:`Skip` that says how
many items were read and roughly where in the file it broke; everything before it is kept.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from urllib.parse import quote

import ijson

from krqa.corpus.document import Document, Skip
from krqa.corpus.fileio import READ_ERRORS, Dump
from krqa.corpus.namumark import parse_namumark

URL_PREFIX = "https://namu.wiki/w/"
_REDIRECT = re.compile(r"^\s*#(?:redirect|넘겨주기)\b", re.I)
_DISAMBIG = re.compile(r"\[include\(틀:동음이의")
BUF_SIZE = 16384


def iter_namuwiki(path: str | os.PathLike[str], source: str = "namuwiki") -> Iterator[Document | Skip]:
    with Dump(path) as dump:
        count = 0
        title = ""
        try:
            for item in ijson.items(dump.stream, "item", buf_size=BUF_SIZE):
                count += 1
                if not isinstance(item, dict):
                    yield Skip("bad_record", f"item {count}", "not a JSON object")
                    continue
                title = str(item.get("title") or "").strip()
                text = item.get("text")
                where = f"item {count} ({title or 'untitled'})"
                namespace = str(item.get("namespace", "0")).strip()
                if namespace not in ("0", ""):
                    yield Skip("namespace", where)
                    continue
                if not isinstance(text, str):
                    yield Skip("bad_record", where, "field 'text' missing or not a string")
                    continue
                if not title or not text.strip():
                    yield Skip("empty", where, "no title" if not title else "no text")
                    continue
                if _REDIRECT.match(text):
                    yield Skip("redirect", where)
                    continue
                if title.endswith("(동음이의어)") or _DISAMBIG.search(text):
                    yield Skip("disambiguation", where)
                    continue
                sections, notes = parse_namumark(text)
                if not sections:
                    yield Skip("no_content", where)
                    continue
                yield Document(id=title, title=title, source=source, url=URL_PREFIX + quote(title), sections=sections, footnotes=notes)
        except (ijson.JSONError, UnicodeDecodeError) as exc:
            message = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            yield Skip(_classify(dump, message), _position(dump, count, title), message)
        except READ_ERRORS as exc:
            yield Skip("truncated", _position(dump, count, title), f"{type(exc).__name__}: {exc}")


def _classify(dump: Dump, message: str) -> str:
    """yajl reports a file cut inside a multi-byte character as bad UTF-8; a file that simply stops
    (nothing left to read and no closing bracket) is called truncated instead."""
    lowered = message.lower()
    if "premature eof" in lowered:
        return "truncated"
    if "utf8" not in lowered.replace("-", ""):
        return "malformed_json"
    try:
        at_eof = not dump.stream.read(1)
    except READ_ERRORS:
        return "truncated"
    if at_eof and dump.compression is None:
        with open(dump.path, "rb") as fh:
            fh.seek(max(0, dump.path.stat().st_size - 16))
            if not fh.read().rstrip().endswith(b"]"):
                return "truncated"
    return "invalid_utf8"


def _position(dump: Dump, count: int, last_title: str) -> str:
    after = f"after item {count} ({last_title})" if count else "before the first item"
    return f"{after}, near file byte {dump.raw_offset()}"

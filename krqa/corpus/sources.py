"""Plain sources beside the wiki dumps: JSONL documents and SQuAD-format QA files (KorQuAD 1.0).

A SQuAD paragraph becomes one document whose id is ``"<title>#<paragraph index>"``; :func:`squad_questions`
hands out the same ids, so retrieval can be scored against the paragraph each question was written on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from krqa.corpus.document import Document, Skip, tidy
from krqa.corpus.fileio import READ_ERRORS, Dump, first_line, peek
from krqa.errors import InputError
from krqa.squad import SquadParagraph, squad_articles, squad_paragraphs


def detect_format(path: str | os.PathLike[str]) -> str:
    """Pick a reader from the first decompressed bytes, falling back to the file name."""
    head = peek(path).lstrip(b"\xef\xbb\xbf \t\r\n")
    name = Path(path).name.lower()
    if head.startswith((b"<doc ", b"<doc>")):
        return "wikiextractor"
    if head.startswith(b"<"):
        return "mediawiki"
    if head.startswith(b"["):
        return "namuwiki"
    if head.startswith(b"{"):
        # The whole first line, not the peek: a JSONL record over 64 KB cut at the peek would not parse.
        first = _json_object(first_line(path).lstrip(b"\xef\xbb\xbf"))
        if first is not None and not isinstance(first.get("data"), list):
            return "jsonl"
        if first is None and ".jsonl" in name:
            return "jsonl"  # a damaged first record: the JSONL reader skips it and goes on
        return "squad"
    for suffix, fmt in ((".xml", "mediawiki"), (".jsonl", "jsonl"), (".json", "namuwiki")):
        if suffix in name:
            return fmt
    raise InputError(f"{path}: cannot tell the format (not XML, wikiextractor <doc> blocks, a JSON array, JSONL or SQuAD); set format: in the source")


def _json_object(line: bytes) -> dict | None:
    """The line as a JSON object, or None (the first line of a pretty-printed SQuAD file, a damaged record)."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def iter_jsonl(path: str | os.PathLike[str], source: str = "jsonl", max_page_chars: int | None = None) -> Iterator[Document | Skip]:
    """One ``{"id", "title", "text"}`` object per line (``url`` optional); a bad line is skipped with its
    line number and the read goes on; a document over ``max_page_chars`` is cut (reported)."""
    with Dump(path) as dump:
        lineno = 0
        try:
            for raw in dump.stream:
                lineno += 1
                if not raw.strip():
                    continue
                where = f"line {lineno}"
                try:
                    obj = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    yield Skip("invalid_utf8", f"{where}, column byte {exc.start}")
                    continue
                except ValueError as exc:
                    yield Skip("malformed_json", where, str(exc))
                    continue
                if not isinstance(obj, dict):
                    yield Skip("bad_record", where, "not a JSON object")
                    continue
                missing = [k for k in ("id", "title", "text") if not isinstance(obj.get(k), (str, int)) or obj.get(k) == ""]
                if missing:
                    yield Skip("empty" if missing == ["text"] else "bad_record", where, f"field '{missing[0]}' missing or empty")
                    continue
                raw, cut = _capped(str(obj["text"]), max_page_chars)
                text = tidy(raw)
                if not text:
                    yield Skip("empty", where, "no text")
                    continue
                if cut:
                    yield _truncated(f"{where}, document {obj['id']}", max_page_chars)
                yield Document(id=str(obj["id"]), title=str(obj["title"]), source=source, url=str(obj.get("url") or ""), sections=[("", text)])
        except READ_ERRORS as exc:
            yield Skip("truncated", f"after line {lineno}, near file byte {dump.raw_offset()}", f"{type(exc).__name__}: {exc}")


def _squad_paragraphs(path: str | os.PathLike[str]) -> Iterator[tuple[str, str, SquadParagraph]]:
    """``(doc_id, title, paragraph)`` of a SQuAD file, plain or compressed; a title seen twice gets a ``" (2)"``
    suffix so ids stay unique. The structure is checked by the one SQuAD reader, :mod:`krqa.squad`."""
    try:
        with Dump(path) as dump:
            data = json.loads(dump.stream.read().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: byte {exc.start}: not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from None
    except READ_ERRORS as exc:
        raise InputError(f"{path}: unreadable: {exc}") from None
    if not isinstance(data, dict) or "data" not in data:
        # Format detection sent a JSON object here; say which formats a corpus file may be.
        found = "a JSON object without 'data'" if isinstance(data, dict) else f"a JSON {type(data).__name__}"
        raise InputError(f"{path}: expected an array of documents (a Namuwiki dump), one JSON object per line "
                         f"(JSONL) or SQuAD's {{\"data\": [...]}}; found {found}")
    names: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for a, article in enumerate(squad_articles(data, path)):
        title = str(article.get("title") or f"article {a}").strip()
        seen[title] = seen.get(title, 0) + 1
        names.append((title if seen[title] == 1 else f"{title} ({seen[title]})", title))
    for para in squad_paragraphs(data, path):
        name, title = names[para.article_index]
        yield f"{name}#{para.index}", title, para


def _capped(text: str, max_chars: int | None) -> tuple[str, bool]:
    """Plain text cut to ``max_chars`` (and whether it was), as the wiki readers cut a page's markup: one huge
    record must not take the build's time and memory (Kiwi's sentence split grows faster than the text)."""
    return (text[:max_chars], True) if max_chars is not None and len(text) > max_chars else (text, False)


def _truncated(position: str, max_chars: int | None) -> Skip:
    return Skip("page_truncated", position, f"longer than corpus.max_page_chars={max_chars}; cut")


def iter_squad(path: str | os.PathLike[str], source: str = "squad", max_page_chars: int | None = None) -> Iterator[Document | Skip]:
    for doc_id, title, para in _squad_paragraphs(path):
        context = para.context
        if not context.strip():
            yield Skip("empty", f"paragraph {doc_id}", "no context")
            continue
        context, cut = _capped(context, max_page_chars)
        if cut:
            yield _truncated(f"paragraph {doc_id}", max_page_chars)
        yield Document(id=doc_id, title=title, source=source, sections=[("", tidy(context))])


def squad_questions(path: str | os.PathLike[str]) -> list[tuple[str, list[str], str]]:
    """Every question of a SQuAD file as ``(question, answer_texts, doc_id)`` with the doc id that
    :func:`iter_squad` gives the question's paragraph."""
    out: list[tuple[str, list[str], str]] = []
    for doc_id, _, para in _squad_paragraphs(path):
        for qa in para.qas:
            question = str(qa.get("question") or "").strip()
            if question:
                answers = [str(a.get("text", "")) for a in qa.get("answers") or [] if isinstance(a, dict)]
                out.append((question, answers, doc_id))
    return out

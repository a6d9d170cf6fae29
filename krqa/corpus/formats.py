"""The corpus format table: one entry per source format with its reader, its piece planner and whether a
folder can be a source of it. The pipeline reads sources, the parallel build plans pieces and detection
names a folder's format through this table only, so a new format is one reader module and one entry here;
a format not in the table is refused, never read as something else.

Detection of a file from its first bytes stays in :func:`krqa.corpus.sources.detect_format` (JSON, JSONL
and SQuAD need more than a prefix to tell apart); :func:`detect_format` adds the folder rule from the table.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from krqa.corpus import sources
from krqa.corpus.document import Document, Skip
from krqa.corpus.mediawiki import iter_mediawiki
from krqa.corpus.namuwiki import iter_namuwiki
from krqa.corpus.pieces import Piece, Planner, Reader, plan_jsonl, plan_mediawiki, plan_namuwiki, plan_wikiextractor
from krqa.corpus.wikiextractor import iter_wikiextractor
from krqa.errors import InputError


@dataclass(frozen=True)
class CorpusFormat:
    """``read(path, source=, max_page_chars=)`` gives a whole source's records; ``plan`` cuts it into pieces
    for a parallel build (None: always one piece); ``folders``: a folder can be a source of this format."""

    name: str
    read: Reader
    plan: Planner | None = None
    folders: bool = False


def _read_jsonl(path: str | os.PathLike[str], source: str = "jsonl", max_page_chars: int | None = None) -> Iterator[Document | Skip]:
    """JSONL documents, each cut to ``max_page_chars``."""
    return sources.iter_jsonl(path, source=source, max_page_chars=max_page_chars)


def _read_squad(path: str | os.PathLike[str], source: str = "squad", max_page_chars: int | None = None) -> Iterator[Document | Skip]:
    """SQuAD paragraphs, each cut to ``max_page_chars``."""
    return sources.iter_squad(path, source=source, max_page_chars=max_page_chars)


FORMATS: dict[str, CorpusFormat] = {f.name: f for f in (
    CorpusFormat("mediawiki", iter_mediawiki, plan_mediawiki),
    CorpusFormat("namuwiki", iter_namuwiki, plan_namuwiki),
    CorpusFormat("jsonl", _read_jsonl, plan_jsonl),
    CorpusFormat("squad", _read_squad),
    CorpusFormat("wikiextractor", iter_wikiextractor, plan_wikiextractor, folders=True),
)}


def corpus_format(name: str) -> CorpusFormat:
    """The table entry of ``name``; an unknown name is bad input (one line, exit 2)."""
    try:
        return FORMATS[name]
    except KeyError:
        raise InputError(f"unknown corpus format '{name}' (known: {', '.join(FORMATS)})") from None


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of a source: a folder is the one folder format of the table, a file is told by its bytes."""
    if Path(path).is_dir():
        return next(f.name for f in FORMATS.values() if f.folders)
    return sources.detect_format(path)


def check_source(path: str | os.PathLike[str], fmt: str) -> CorpusFormat:
    """The entry for reading ``path`` as ``fmt``: the path must exist, and be a file unless the format reads folders."""
    path = Path(path)
    spec = corpus_format(fmt)
    if path.is_dir():
        if not spec.folders:
            raise InputError(f"{path}: a folder is not a {fmt} source (only {', '.join(f.name for f in FORMATS.values() if f.folders)} reads folders)")
    elif not path.is_file():
        raise InputError(f"{path}: corpus source not found")
    return spec


def plan_pieces(source: int, name: str, path: Path, fmt: str, piece_bytes: int, limit: int | None = None) -> list[Piece]:
    """The pieces of one source, in file order (one piece when the format or a ``limit`` forbids cutting)."""
    spec = check_source(path, fmt)
    whole = Piece(source, name, str(path), fmt, "whole", 0, path.stat().st_size if path.is_file() else 0, limit=limit, reader=spec.read)
    if limit is not None or spec.plan is None:
        return [whole]
    return spec.plan(whole, piece_bytes)

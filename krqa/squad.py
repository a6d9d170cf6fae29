"""SQuAD-format files (SQuAD v1/v2, KorQuAD, ETRI MRC, TyDi QA GoldP): the one reader of their structure.

Training's converter (``convert_squad``) and the held-out reading set (``qa/reading.py``) read the questions
through :func:`iter_squad`; the corpus reader (``corpus/sources.py``, which also reads compressed files) walks the
paragraphs with :func:`squad_paragraphs`. Each then applies its own rules (which answer, which title spelling,
which document id). The structure checks are here once, so a malformed file fails the same way, naming the file
and the article, everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from krqa.errors import InputError
from krqa.fsutil import read_json


@dataclass(frozen=True)
class SquadQuestion:
    """One question with its article title (as written), paragraph text, id (None when the file has none), the
    answer texts in file order, and SQuAD v2's ``is_impossible``."""

    article: str
    article_index: int
    context: str
    id: str | None
    question: Any
    answers: list[str]
    impossible: bool


def squad_articles(data: Any, path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The ``data`` array of a parsed SQuAD document, with every article a mapping that has a paragraph list."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise InputError(f"{path}: field 'data': expected the SQuAD list of articles")
    for a, article in enumerate(data["data"]):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise InputError(f"{path}: data[{a}]: expected an article with a 'paragraphs' list")
    return data["data"]


@dataclass(frozen=True)
class SquadParagraph:
    """One paragraph with its article's title (as written) and position; ``qas`` holds its question objects."""

    article: str
    article_index: int
    index: int
    context: str
    qas: list[dict[str, Any]]


def squad_paragraphs(data: Any, path: str | os.PathLike[str]) -> Iterator[SquadParagraph]:
    """Every paragraph of a parsed SQuAD document in order; a malformed paragraph or question is an error naming
    its place (``data[a].paragraphs[p]``)."""
    for a, article in enumerate(squad_articles(data, path)):
        title = str(article.get("title") or "")
        for p, para in enumerate(article["paragraphs"]):
            if not isinstance(para, dict) or not isinstance(para.get("qas", []), list):
                raise InputError(f"{path}: data[{a}].paragraphs[{p}]: expected a paragraph with a 'qas' list")
            qas = para.get("qas", [])
            if not all(isinstance(qa, dict) for qa in qas):
                raise InputError(f"{path}: data[{a}].paragraphs[{p}]: a question is not a JSON object")
            context = para.get("context")
            yield SquadParagraph(title, a, p, context if isinstance(context, str) else "", qas)


def iter_squad(path: str | os.PathLike[str]) -> Iterator[SquadQuestion]:
    """Every question of the file in order; a malformed paragraph or question is an error naming its article."""
    for para in squad_paragraphs(read_json(path), path):
        for qa in para.qas:
            answers = [str(x.get("text", "")) for x in qa.get("answers") or [] if isinstance(x, dict)]
            qid = str(qa["id"]) if "id" in qa else None
            yield SquadQuestion(para.article, para.article_index, para.context, qid, qa.get("question"), answers,
                                bool(qa.get("is_impossible")))

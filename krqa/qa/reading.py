"""A held-out Korean reading set in the competition's format, made from a SQuAD-format file (KorQuAD 1.0).

The NIKL dev set has 98 questions and no corpus here covers them, so it cannot show what retrieval adds. A reading
set can: every question has its gold paragraph, the index is built over the same paragraphs, and the answer is
in the text. Each question becomes a 단답형 item (gold: the answer span) and a 선다형 item whose three distractors
are answers to *other* questions about the same article, chosen to have the same shape as the gold answer (a
number with the same counter, a name of similar length), so that the options cannot be told apart without
reading. By default no distractor appears in the question's own paragraph: then the right passage identifies the
answer, and the set measures whether retrieval finds it (passages from elsewhere in the article do carry the
distractors). ``distractors="article"`` also allows strings from the paragraph itself, which tests reading skill
instead. Items are split into train and held-out **by article**, so nothing a model trains on is about an article
it is evaluated on.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from krqa.errors import InputError
from krqa.squad import iter_squad
from krqa.qa.data import MC, SHORT, QAItem

N_OPTIONS = 4
MAX_POOL = 256
"""Distractor candidates looked at per question: an article with more distinct answers (KorQuAD's largest has
175) contributes a seeded sample of this many, so the cost per question is bounded and the set is made in time
linear in the number of questions (it was quadratic in questions per article)."""
CATEGORY = "독해"
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class ReadingQuestion:
    article: str
    question_id: str
    question: str
    answer: str
    context: str = ""


def _norm(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def read_squad(path: str | Path) -> list[ReadingQuestion]:
    """Questions with their first answer, in file order; malformed records are an error naming the article."""
    out: list[ReadingQuestion] = []
    for q in iter_squad(path):
        title = _norm(q.article)
        if not title:
            raise InputError(f"{path}: data[{q.article_index}]: article without a title")
        answer = _norm(q.answers[0]) if q.answers else ""
        question = _norm(str(q.question or ""))
        if answer and question:
            out.append(ReadingQuestion(title, q.id if q.id is not None else f"{title}-{len(out)}", question, answer, q.context))
    return out


def shape(answer: str) -> tuple[bool, str, str, int]:
    """What makes two answers look alike: digits or not, the last character (a counter such as 년/명/세 after a
    number, a suffix such as 대통령/주의 after a name), the script, and the number of words."""
    has_digit = any(ch.isdigit() for ch in answer)
    hangul = sum(1 for ch in answer if "가" <= ch <= "힣")
    latin = sum(1 for ch in answer if ch.isascii() and ch.isalpha())
    script = "hangul" if hangul >= latin else "latin"
    return has_digit, answer[-1:], script, len(answer.split())


def similarity(gold: str, other: str) -> float:
    """Higher for a distractor of the same shape; length closeness breaks ties."""
    g, o = shape(gold), shape(other)
    score = 3.0 * (g[0] == o[0]) + 2.0 * (g[1] == o[1]) + 1.0 * (g[2] == o[2]) + 1.0 * (g[3] == o[3])
    return score - abs(len(gold) - len(other)) / max(len(gold), len(other))


def _ambiguous(gold: str, other: str) -> bool:
    a, b = gold.replace(" ", ""), other.replace(" ", "")
    return a == b or a in b or b in a


def distractors(gold: str, pool: list[str], rng: random.Random, k: int = N_OPTIONS - 1) -> list[str] | None:
    """``k`` distinct answers from ``pool`` most like ``gold`` (never containing it or contained in it), or None."""
    seen: set[str] = set()
    candidates = []
    for other in pool:
        key = other.replace(" ", "")
        if key in seen or _ambiguous(gold, other):
            continue
        seen.add(key)
        candidates.append(other)
    if len(candidates) < k:
        return None
    rng.shuffle(candidates)
    candidates.sort(key=lambda o: -similarity(gold, o))
    chosen: list[str] = []
    for other in candidates:
        if all(not _ambiguous(other, c) for c in chosen):
            chosen.append(other)
        if len(chosen) == k:
            return chosen
    return None


def is_heldout(article: str, fraction: float, seed: int) -> bool:
    """A stable split by article title: the same titles are held out whatever else the file contains."""
    digest = hashlib.sha256(f"{seed}:{article}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _mc_question(stem: str, options: list[str]) -> str:
    return stem + "\\n " + " ".join(f"{i}\\t{o}" for i, o in enumerate(options, 1))


def _distinct_answers(questions: list[ReadingQuestion]) -> dict[str, list[str]]:
    """Each article's answers, one per spacing-insensitive key, in first-seen order: what :func:`distractors`
    would keep of the full list, computed once per article instead of once per question."""
    out: dict[str, list[str]] = {}
    seen: dict[str, set[str]] = {}
    for q in questions:
        key = q.answer.replace(" ", "")
        keys = seen.setdefault(q.article, set())
        if key not in keys:
            keys.add(key)
            out.setdefault(q.article, []).append(q.answer)
    return out


def make_items(questions: list[ReadingQuestion], seed: int = 0, types: tuple[str, ...] = (MC, SHORT),
               distractors_from: str = "other-paragraphs") -> Iterator[tuple[str, QAItem]]:
    """``(article, item)`` for every question: a 선다형 item (when the article has enough distinct answers) and a
    단답형 item; the gold option's position is drawn uniformly, so position bias shows up as errors. Distractors
    come from the article's distinct answers (at most :data:`MAX_POOL` of them per question)."""
    if distractors_from not in ("other-paragraphs", "article"):
        raise InputError(f"distractors {distractors_from!r}: expected other-paragraphs or article")
    rng = random.Random(seed)
    by_article = _distinct_answers(questions)
    for n, q in enumerate(questions):
        common: dict[str, Any] = {"category": CATEGORY, "domain": "KorQuAD", "topic_keyword": q.article.replace("_", " ")}
        if MC in types:
            own = q.context.replace(" ", "") if distractors_from == "other-paragraphs" else ""
            answers = by_article[q.article]
            if len(answers) > MAX_POOL:
                answers = rng.sample(answers, MAX_POOL)
            pool = [a for a in answers if a != q.answer and a.replace(" ", "") not in own]
            others = distractors(q.answer, pool, rng)
            if others is not None:
                options = list(others)
                gold = rng.randrange(N_OPTIONS)
                options.insert(gold, q.answer)
                yield q.article, QAItem(id=f"mc-{n:05d}", question_type=MC, question=_mc_question(q.question, options), answer=str(gold + 1), **common)
        if SHORT in types:
            yield q.article, QAItem(id=f"sa-{n:05d}", question_type=SHORT, question=q.question, answer=q.answer, **common)


def split_items(pairs: Iterator[tuple[str, QAItem]], heldout_fraction: float, seed: int) -> tuple[list[QAItem], list[QAItem]]:
    """``(train, heldout)`` by article."""
    train: list[QAItem] = []
    heldout: list[QAItem] = []
    for article, item in pairs:
        (heldout if is_heldout(article, heldout_fraction, seed) else train).append(item)
    return train, heldout

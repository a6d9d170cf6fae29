"""Retrieval quality on SQuAD-format QA (KorQuAD): Recall@k at document and answer level, and MRR.

Document level asks whether the gold paragraph's document is among the first k *distinct* documents of
the ranking (several chunks of one document count once); answer level whether a gold answer string occurs
in one of the first k chunks. SQuAD doc ids are ``title#paragraph``, so article-level recall (any paragraph
of the gold article) is reported beside the stricter paragraph-level one. NIKL-format files (no passage labels)
are scored by :mod:`krqa.index.answer_hits`; :func:`detect_qa_format` tells the two apart.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from krqa.errors import InputError
from krqa.index.types import Hit, Retriever
from krqa.log import progress_disabled


def detect_qa_format(path: str | os.PathLike[str]) -> Literal["squad", "nikl"]:
    """SQuAD files are one ``{"data": …}`` object, NIKL files a JSON array; the first character tells them apart
    without parsing a large file twice."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: file not found")
    with p.open("rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        return "nikl"
    if head.startswith(b"{"):
        return "squad"
    raise InputError(f"{p}: neither a SQuAD-format object nor a NIKL-format JSON array")


def _article(doc_id: str) -> str:
    return doc_id.rsplit("#", 1)[0]


def _distinct(values: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)


def score_rankings(rankings: Sequence[list[Hit]], questions: Sequence[tuple[str, list[str], str]], ks: Sequence[int]) -> dict[str, Any]:
    """Metrics for precomputed rankings, one per question (same order)."""
    n = len(questions)
    out: dict[str, Any] = {"questions": n}
    hits_doc = dict.fromkeys(ks, 0)
    hits_article = dict.fromkeys(ks, 0)
    hits_answer = dict.fromkeys(ks, 0)
    rr = 0.0
    for hits, (_, answers, gold) in zip(rankings, questions, strict=True):
        docs = _distinct([h.doc_id for h in hits])
        articles = _distinct([_article(h.doc_id) for h in hits])
        rank = docs.index(gold) + 1 if gold in docs else None
        rr += 1.0 / rank if rank else 0.0
        art_rank = articles.index(_article(gold)) + 1 if _article(gold) in articles else None
        answers = [a for a in answers if a.strip()]
        first_answer = next((i + 1 for i, h in enumerate(hits) if any(a in h.text for a in answers)), None)
        for k in ks:
            hits_doc[k] += bool(rank and rank <= k)
            hits_article[k] += bool(art_rank and art_rank <= k)
            hits_answer[k] += bool(first_answer and first_answer <= k)
    for k in ks:
        out[f"doc_recall@{k}"] = round(hits_doc[k] / n, 4) if n else 0.0
        out[f"article_recall@{k}"] = round(hits_article[k] / n, 4) if n else 0.0
        out[f"answer_recall@{k}"] = round(hits_answer[k] / n, 4) if n else 0.0
    out["mrr"] = round(rr / n, 4) if n else 0.0
    return out


def evaluate_retrieval(
    retriever: Retriever,
    questions: Sequence[tuple[str, list[str], str]],
    ks: Sequence[int] = (1, 5, 20),
    modes: Sequence[str] | None = None,
    batch_size: int = 64,
) -> dict[str, dict[str, Any]]:
    """Per mode, rank every question once to depth 2·max(k) chunks (capped at max_top_k) and score it."""
    ks = sorted(set(ks))
    depth = min(retriever.cfg.max_top_k, 2 * ks[-1])
    texts = [q for q, _, _ in questions]
    results = {}
    for mode in modes or retriever.modes:
        rankings: list[list[Hit]] = []
        for start in tqdm(range(0, len(texts), batch_size), desc=f"eval {mode}", disable=progress_disabled()):
            rankings += retriever.search_batch(texts[start:start + batch_size], top_k=depth, mode=mode)
        results[mode] = score_rankings(rankings, questions, ks)
    return results

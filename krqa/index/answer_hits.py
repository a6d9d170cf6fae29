"""Answer-hit@k: retrieval quality on competition (NIKL-format) questions, which have answers but no passage labels.

Without gold passages the question asked is whether the retrieved text *contains* the answer, in the form each
question type has:

- 단답형: any ``#`` alternative occurs in one of the top-k passages;
- 선다형: the gold option's text occurs in one of the top-k passages; the distractors' rate (mean over the wrong
  options of "occurs in the top-k") is reported beside it, because an option that every passage mentions says
  nothing about whether retrieval tells the options apart;
- 서술형: ROUGE-1 recall of the gold answer against the top-k passages concatenated, over the morphemes the
  official-style ROUGE uses (:mod:`krqa.qa.scorer.lexical`), i.e. how much of the answer's vocabulary retrieval
  brings into the prompt.

Strings are compared after NFC normalisation with every run of whitespace collapsed to one space, so line breaks
in a chunk do not hide an answer; spacing variants the gold does not list (``만나이`` / ``만 나이``) still miss.
The "all" figure is the mean of the per-question value (0/1 hit, or the 서술형 recall), a single number to
compare runs by, not a metric of its own.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from krqa.errors import InputError
from krqa.index.config import QueryConfig
from krqa.index.query import build_queries
from krqa.index.tokenize import has_content
from krqa.index.types import Hit, Retriever
from krqa.qa.data import DESC, MC, QUESTION_TYPES, SHORT, QAItem
from krqa.qa.scorer.lexical import MorphTokenizer, rouge_preprocess

QUERY_VARIANTS: tuple[str, ...] = ("question", "topic+question")


def normalize_text(text: str) -> str:
    """NFC with whitespace runs collapsed: the form both sides of a substring test are put in."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def variant_config(base: QueryConfig, variant: str) -> QueryConfig:
    """``retrieval.query`` with the topic keyword switched by the variant; options handling stays as configured,
    so the queries are the ones predict and serve send."""
    if variant not in QUERY_VARIANTS:
        raise InputError(f"--query {variant!r}: expected one of {', '.join(QUERY_VARIANTS)}")
    return base.model_copy(update={"use_topic_keyword": variant == "topic+question"})


def rank_items(retriever: Retriever, items: Sequence[QAItem], query: QueryConfig, depth: int, mode: str,
               batch_size: int = 64, progress: Callable[[int], None] | None = None) -> list[list[Hit]]:
    """Rank every item to ``depth`` chunks with the queries :func:`build_queries` makes under ``query``.

    The queries of ``batch_size`` items go to ``search_batch`` at once; an item with several queries
    (``options: per_option``) keeps each chunk's best score over them, as ``search_items`` merges them for predict
    and serve. ``progress`` is called with the number of items each batch finished."""
    per_item = [[q for q in build_queries(item, query) if has_content(q)] for item in items]
    for item, queries in zip(items, per_item, strict=True):
        if not queries:
            raise InputError(f"item {item.id!r}: question and topic_keyword have no searchable text")
    out: list[list[Hit]] = []
    for start in range(0, len(items), batch_size):
        batch = per_item[start:start + batch_size]
        ranked = retriever.search_batch([q for queries in batch for q in queries], top_k=depth, mode=mode)
        pos = 0
        for queries in batch:
            best: dict[int, Hit] = {}
            for hits in ranked[pos:pos + len(queries)]:
                for hit in hits:
                    if hit.chunk_id not in best or hit.score > best[hit.chunk_id].score:
                        best[hit.chunk_id] = hit
            out.append(sorted(best.values(), key=lambda h: -h.score)[:depth])
            pos += len(queries)
        if progress:
            progress(len(batch))
    return out


def _first_rank(passages: Sequence[str], needle: str) -> int | None:
    """1-based rank of the first passage containing ``needle`` (both normalised), None when none does."""
    if not needle:
        return None
    return next((i + 1 for i, text in enumerate(passages) if needle in text), None)


def _hit_at(rank: int | None, k: int) -> float:
    return 1.0 if rank is not None and rank <= k else 0.0


def item_values(items: Sequence[QAItem], rankings: Sequence[Sequence[Hit]], ks: Sequence[int],
                tokenizer: MorphTokenizer) -> list[dict[str, Any]]:
    """Per question: ``value@k`` (the type's hit, or the 서술형 recall) and, for 선다형, ``distractor@k``.

    Items need gold answers; 서술형 morphemes are computed in one tokenizer call for the whole set (each passage
    once, however many questions retrieve it)."""
    ks = sorted(set(ks))
    for item in items:
        if item.answer is None:
            raise InputError(f"item {item.id!r}: output.answer missing (answer-hit@k needs gold answers)")
    # Chunks are tokenized one by one: morphemes never span the space that joins two chunks, so the counts add
    # up to those of the concatenation (and no chunk nears ROUGE's 1,000-word cut).
    desc = [(i, item) for i, item in enumerate(items) if item.question_type == DESC]
    texts: dict[str, None] = {}
    for i, item in desc:
        texts.setdefault(rouge_preprocess(item.answer or ""), None)
        for hit in rankings[i][:ks[-1]]:
            texts.setdefault(rouge_preprocess(hit.text), None)
    order = list(texts)
    morphs = dict(zip(order, tokenizer.morphs_batch(order), strict=True)) if order else {}

    def tokens(text: str) -> list[str]:
        return [t for t in morphs[rouge_preprocess(text)] if t.strip()]

    out: list[dict[str, Any]] = []
    for item, hits in zip(items, rankings, strict=True):
        assert item.answer is not None
        hits = list(hits)[:ks[-1]]
        record: dict[str, Any] = {"id": item.id, "question_type": item.question_type, "category": item.category,
                                  "domain": item.domain}
        if item.question_type == DESC:
            gold = Counter(tokens(item.answer))
            total = sum(gold.values())
            seen: Counter[str] = Counter()
            done = 0
            for k in ks:
                for hit in hits[done:k]:
                    seen.update(tokens(hit.text))
                done = k
                overlap = sum((gold & seen).values())
                record[f"value@{k}"] = overlap / total if total else 0.0
        else:
            passages = [normalize_text(h.text) for h in hits]
            if item.question_type == SHORT:
                ranks = [_first_rank(passages, normalize_text(a)) for a in item.alternatives]
                rank = min((r for r in ranks if r is not None), default=None)
                distractor_ranks: list[int | None] = []
            else:
                options = [normalize_text(o) for o in item.options]
                gold_no = int(item.answer) - 1 if item.answer.strip().isdigit() else -1
                if not 0 <= gold_no < len(options):
                    raise InputError(f"item {item.id!r}: output.answer {item.answer!r} is not an option number 1..{len(options)}")
                rank = _first_rank(passages, options[gold_no])
                distractor_ranks = [_first_rank(passages, o) for j, o in enumerate(options) if j != gold_no and o]
            for k in ks:
                record[f"value@{k}"] = _hit_at(rank, k)
                if item.question_type == MC:
                    record[f"distractor@{k}"] = (sum(_hit_at(r, k) for r in distractor_ranks) / len(distractor_ranks)
                                                 if distractor_ranks else None)
        out.append(record)
    return out


_TYPE_METRIC = {SHORT: "hit", MC: "hit", DESC: "rouge1_recall"}


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


def summarize(records: Sequence[dict[str, Any]], ks: Sequence[int]) -> dict[str, Any]:
    """Means over a group of :func:`item_values` records: ``score@k`` over all, and per type its own metric."""
    ks = sorted(set(ks))
    out: dict[str, Any] = {"questions": len(records)}
    for k in ks:
        out[f"score@{k}"] = _mean([r[f"value@{k}"] for r in records])
    by_type: dict[str, Any] = {}
    for qtype in QUESTION_TYPES:
        group = [r for r in records if r["question_type"] == qtype]
        if not group:
            continue
        entry: dict[str, Any] = {"questions": len(group)}
        for k in ks:
            entry[f"{_TYPE_METRIC[qtype]}@{k}"] = _mean([r[f"value@{k}"] for r in group])
        if qtype == MC:
            with_distractors = [r for r in group if r[f"distractor@{ks[0]}"] is not None]
            for k in ks:
                entry[f"distractor_hit@{k}"] = _mean([r[f"distractor@{k}"] for r in with_distractors])
        by_type[qtype] = entry
    out["by_type"] = by_type
    return out


def report(records: Sequence[dict[str, Any]], ks: Sequence[int]) -> dict[str, Any]:
    """:func:`summarize` of everything, plus the same per ``category`` and per ``domain`` (largest first)."""
    out = summarize(records, ks)
    for field, key in (("category", "by_category"), ("domain", "by_domain")):
        values = Counter(r[field] for r in records)
        out[key] = {v: summarize([r for r in records if r[field] == v], ks) for v, _ in values.most_common()}
    return out


def evaluate_answer_hits(retriever: Retriever, items: Sequence[QAItem], ks: Sequence[int], modes: Sequence[str],
                         variants: Sequence[str], query: QueryConfig, tokenizer: MorphTokenizer,
                         batch_size: int = 64, progress: Callable[[int], None] | None = None) -> dict[str, dict[str, Any]]:
    """``{mode: {variant: report + per-question records}}``: every item ranked once per mode and query variant to
    depth max(k), then scored at each k."""
    ks = sorted(set(ks))
    results: dict[str, dict[str, Any]] = {}
    for mode in modes:
        results[mode] = {}
        for variant in variants:
            rankings = rank_items(retriever, items, variant_config(query, variant), ks[-1], mode, batch_size, progress)
            records = item_values(items, rankings, ks, tokenizer)
            results[mode][variant] = {**report(records, ks), "items": records}
    return results

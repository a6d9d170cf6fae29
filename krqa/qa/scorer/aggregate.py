"""Match predictions to gold by id, score every item, and roll the scores up the way the leaderboard does.

Leaderboard final = mean(선다형 accuracy, 단답형 EM, mean(ROUGE-1, BERTScore, BLEURT)), shown ×100.
A 선다형 answer that is not written as an option number (``3번``, ``9``, ``""``, ``" 3"``) is wrong, as in the
official scorer; its id is listed in ``invalid_mc_answers`` and in a warning instead of refusing the file.
Two cases the leaderboard never meets are made explicit rather than guessed:
- a question type absent from the gold set: the final is the mean over the types present and
  ``types_missing`` lists the others (such a number is not comparable with the leaderboard);
- a model metric that cannot run here: it is reported UNAVAILABLE with its reason, the official final is
  ``None``, and ``final_available`` (서술형 = mean of the metrics that did run) is given separately,
  labelled as not comparable.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any

from krqa.errors import InputError
from krqa.qa.config import EvaluateConfig
from krqa.qa.data import DESC, MC, QUESTION_TYPES, SHORT, QAItem
from krqa.qa.scorer.lexical import (
    is_option_answer, make_tokenizer, mc_correct, mc_correct_lenient, rouge1_scores, short_exact, short_exact_no_space,
    short_relaxed,
)
from krqa.qa.scorer.model_scores import BertScorer, BleurtScorer, MetricUnavailable

log = logging.getLogger(__name__)

DESC_METRICS: tuple[str, ...] = ("rouge1", "bertscore", "bleurt")
_SHOW_IDS = 5
_SHOW_INVALID = 50


@dataclass
class ItemScore:
    """One gold item's scores; metrics that do not apply to its type stay None."""

    id: str
    question_type: str
    domain: str
    category: str
    correct: bool | None = None
    correct_lenient: bool | None = None
    exact: bool | None = None
    exact_no_space: bool | None = None
    relaxed: bool | None = None
    rouge1: float | None = None
    bertscore: float | None = None
    bleurt: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _pred_fields(pred: QAItem | dict[str, Any]) -> tuple[str, str | None, str | None]:
    """(id, answer, question_type) from a QAItem or a raw submission record."""
    if isinstance(pred, QAItem):
        return pred.id, pred.answer, pred.question_type
    output = pred.get("output") if isinstance(pred.get("output"), dict) else {}
    answer = output.get("answer", pred.get("answer"))
    inp = pred.get("input") if isinstance(pred.get("input"), dict) else {}
    return str(pred.get("id")), answer if isinstance(answer, str) else None, inp.get("question_type")


def _ids_text(ids: Sequence[str], limit: int = _SHOW_IDS) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (f", … ({len(ids)} in all)" if len(ids) > limit else "")


def match_predictions(preds: Sequence[QAItem | dict[str, Any]], gold: Sequence[QAItem],
                      pred_name: str = "predictions", gold_name: str = "gold") -> list[str]:
    """Prediction answers in gold order; any missing, extra or duplicate id or type mismatch is an InputError."""
    by_id: dict[str, tuple[str | None, str | None]] = {}
    duplicates: list[str] = []
    for pred in preds:
        pid, answer, qtype = _pred_fields(pred)
        if pid in by_id:
            duplicates.append(pid)
        by_id[pid] = (answer, qtype)
    if duplicates:
        raise InputError(f"{pred_name}: duplicate ids: {_ids_text(duplicates)}")
    gold_ids = [g.id for g in gold]
    gold_set = set(gold_ids)
    if len(gold_set) != len(gold_ids):
        dup = [i for i, count in Counter(gold_ids).items() if count > 1]
        raise InputError(f"{gold_name}: duplicate ids: {_ids_text(dup)}")
    missing = [i for i in gold_ids if i not in by_id]
    if missing:
        raise InputError(f"{pred_name}: ids in {gold_name} but not predicted: {_ids_text(missing)}")
    extra = [i for i in by_id if i not in gold_set]
    if extra:
        raise InputError(f"{pred_name}: ids not in {gold_name}: {_ids_text(extra)}")
    answers: list[str] = []
    for g in gold:
        answer, qtype = by_id[g.id]
        if qtype is not None and qtype != g.question_type:
            raise InputError(f"{pred_name}: item {g.id!r}: input.question_type {qtype!r} differs from {gold_name} ({g.question_type!r})")
        if answer is None:
            raise InputError(f"{pred_name}: item {g.id!r}: output.answer missing or not a string")
        if g.answer is None:
            raise InputError(f"{gold_name}: item {g.id!r}: output.answer missing (gold needs answers)")
        answers.append(answer)
    return answers


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return fmean(present) if present else None


def final_score(type_scores: dict[str, float | None]) -> float | None:
    """Leaderboard final: the plain mean of the per-type scores (None entries are absent types)."""
    return _mean(list(type_scores.values()))


def summarize(items: Sequence[ItemScore], unavailable: dict[str, str]) -> dict[str, Any]:
    """Per-type metrics and finals for one group of items (the whole set, a domain or a category)."""
    by_type: dict[str, dict[str, Any]] = {}
    official: dict[str, float | None] = {}
    available: dict[str, float | None] = {}
    for qtype in QUESTION_TYPES:
        group = [s for s in items if s.question_type == qtype]
        entry: dict[str, Any] = {"n": len(group)}
        if not group:
            official[qtype] = available[qtype] = None
            by_type[qtype] = entry
            continue
        if qtype == MC:
            entry["accuracy"] = fmean(float(bool(s.correct)) for s in group)
            entry["accuracy_lenient_not_official"] = fmean(float(bool(s.correct_lenient)) for s in group)
            official[qtype] = available[qtype] = entry["accuracy"]
        elif qtype == SHORT:
            entry["exact_match"] = fmean(float(bool(s.exact)) for s in group)
            entry["exact_match_no_space_not_official"] = fmean(float(bool(s.exact_no_space)) for s in group)
            entry["relaxed_match_not_official"] = fmean(float(bool(s.relaxed)) for s in group)
            official[qtype] = available[qtype] = entry["exact_match"]
        else:
            for metric in DESC_METRICS:
                entry[metric] = None if metric in unavailable else fmean(float(getattr(s, metric)) for s in group)
            ran = [entry[m] for m in DESC_METRICS if entry[m] is not None]
            entry["desc_mean"] = fmean(ran) if len(ran) == len(DESC_METRICS) else None
            entry["desc_mean_available"] = fmean(ran) if ran else None
            official[qtype] = entry["desc_mean"]
            available[qtype] = entry["desc_mean_available"]
        by_type[qtype] = entry
    types_missing = [t for t in QUESTION_TYPES if not by_type[t]["n"]]
    complete = not unavailable or not by_type[DESC]["n"]
    final = final_score(official) if complete else None
    final_avail = final_score(available)
    return {
        "n": len(items),
        "by_type": by_type,
        "types_missing": types_missing,
        "final": final,
        "final_x100": None if final is None else round(final * 100, 2),
        "final_available": final_avail,
        "final_available_x100": None if final_avail is None else round(final_avail * 100, 2),
        "comparable_with_leaderboard": final is not None and not types_missing,
    }


def _model_metric(name: str, build: Callable[[], Any], preds: list[str], golds: list[str],
                  unavailable: dict[str, str], models: dict[str, str]) -> list[float] | None:
    try:
        scorer = build()
        models[name] = scorer.name
        return scorer.score(preds, golds)
    except MetricUnavailable as exc:
        unavailable[name] = str(exc)
    except ImportError as exc:
        unavailable[name] = f"missing package: {exc}"
    log.warning("%s UNAVAILABLE: %s", name, unavailable[name])
    return None


def score(preds: Sequence[QAItem | dict[str, Any]], gold: Sequence[QAItem], cfg: EvaluateConfig, *,
          model_metrics: bool | None = None,
          pred_name: str = "predictions", gold_name: str = "gold") -> dict[str, Any]:
    """Official scores of ``preds`` against ``gold`` (matched by id) with type/domain/category breakdowns.

    ``model_metrics=False`` (default: ``cfg.model_metrics``) skips BERTScore and BLEURT; they are then
    reported unavailable for that reason, so the official final is None like any other missing metric.
    """
    answers = match_predictions(preds, gold, pred_name, gold_name)
    use_models = cfg.model_metrics if model_metrics is None else model_metrics
    items = [ItemScore(g.id, g.question_type, g.domain, g.category) for g in gold]
    desc_idx: list[int] = []
    invalid_mc: list[str] = []
    for i, (g, answer) in enumerate(zip(gold, answers)):
        gold_answer = g.answer or ""
        if g.question_type == MC:
            items[i].correct = mc_correct(answer, gold_answer)
            items[i].correct_lenient = mc_correct_lenient(answer, gold_answer)
            if not is_option_answer(answer, len(g.options)):
                invalid_mc.append(g.id)
        elif g.question_type == SHORT:
            items[i].exact = short_exact(answer, gold_answer)
            items[i].exact_no_space = short_exact_no_space(answer, gold_answer)
            items[i].relaxed = short_relaxed(answer, gold_answer)
        else:
            desc_idx.append(i)
    if invalid_mc:
        log.warning("%s: %d 선다형 answer(s) not written as an option number, counted wrong as the official scorer "
                    "does: %s", pred_name, len(invalid_mc), _ids_text(invalid_mc, limit=_SHOW_INVALID))
    unavailable: dict[str, str] = {}
    models: dict[str, str] = {}
    tokenizer_name = None
    if desc_idx:
        d_pred = [answers[i] for i in desc_idx]
        d_gold = [gold[i].answer or "" for i in desc_idx]
        tokenizer = make_tokenizer(cfg.rouge_tokenizer)
        tokenizer_name = tokenizer.name
        per_metric: dict[str, list[float] | None] = {"rouge1": rouge1_scores(d_pred, d_gold, tokenizer)}
        if use_models:
            per_metric["bertscore"] = _model_metric(
                "bertscore",
                lambda: BertScorer(cfg.bertscore_model, cfg.bertscore_layer, cfg.device, cfg.bertscore_baseline_f, cfg.batch_size),
                d_pred, d_gold, unavailable, models,
            )
            per_metric["bleurt"] = _model_metric(
                "bleurt",
                lambda: BleurtScorer(cfg.bleurt_model, cfg.device, cfg.batch_size, cfg.bleurt_max_length),
                d_pred, d_gold, unavailable, models,
            )
        else:
            for name in ("bertscore", "bleurt"):
                unavailable[name] = "skipped (--no-model-metrics / evaluate.model_metrics=false)"
        for metric, values in per_metric.items():
            if values is not None:
                for i, value in zip(desc_idx, values):
                    setattr(items[i], metric, value)
    report = summarize(items, unavailable)
    report.update(
        rouge_tokenizer=tokenizer_name,
        invalid_mc_answers=invalid_mc,
        models=models,
        unavailable=unavailable,
        by_domain={d: summarize([s for s in items if s.domain == d], unavailable) for d in sorted({s.domain for s in items})},
        by_category={c: summarize([s for s in items if s.category == c], unavailable) for c in sorted({s.category for s in items})},
        items=[s.to_json() for s in items],
    )
    return report

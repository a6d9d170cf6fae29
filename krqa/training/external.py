"""Extra stage-1 training sets converted to the NIKL item schema.

Everything downstream (prompt builder, answer post-processing, metrics) speaks ``QAItem``, so other datasets are
turned into NIKL items once here instead of teaching each stage another format. A converted item may bring its
own passage (a CLIcK paragraph, a SQuAD context): the question is often unanswerable without it, so it is shown
to the model as a context exactly like a retrieved passage would be.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from krqa.errors import InputError
from krqa.qa.data import MC, SHORT, QAItem, load_items, parse_options, split_alternatives
from krqa.training.config import ExternalSet

log = logging.getLogger(__name__)

CLICK_MIN_CHOICES, CLICK_MAX_CHOICES = 4, 5


@dataclass
class Passage:
    """A context passage with the fields the prompt builder reads from a retrieval hit."""

    title: str
    text: str
    section: str = ""


@dataclass
class SourceItem:
    """A training question, where it came from, and the passages it carries with it (empty for NIKL items)."""

    item: QAItem
    source: str
    contexts: list[Passage] = field(default_factory=list)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def _mc_question(stem: str, choices: list[str]) -> str:
    """NIKL 선다형 layout: the stem, then ``N<TAB>option`` markers after a newline."""
    return stem.strip() + "\n " + " ".join(f"{i}\t{c}" for i, c in enumerate(choices, 1))


def _click_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise InputError(f"{root}: CLIcK file or directory not found")
    files = sorted(root.rglob("*.json"))
    if not files:
        raise InputError(f"{root}: no CLIcK *.json files found")
    return files


def convert_click(path: str | Path, use_context: bool = True) -> list[SourceItem]:
    """CLIcK ``{id, paragraph, question, choices[], answer}`` -> 선다형 items whose answer is the option number.

    The directory layout ``<Culture|Language>/<Korean X>/<file>.json`` supplies category and domain. Items whose
    answer is not one of the choices, whose choice count is outside 4–5, or whose options would not parse back
    out of the NIKL layout are dropped and counted, because they would teach a wrong answer.
    """
    root = Path(path)
    out: list[SourceItem] = []
    dropped: Counter[str] = Counter()
    for file in _click_files(root):
        records = _read_json(file)
        if not isinstance(records, list):
            raise InputError(f"{file}: expected a JSON array of CLIcK items")
        rel = file.relative_to(root) if root.is_dir() else Path(file.name)
        category = rel.parts[0] if len(rel.parts) > 2 else "CLIcK"
        domain = rel.parts[1] if len(rel.parts) > 2 else file.stem
        for pos, rec in enumerate(records):
            if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) for k in ("question", "answer")):
                raise InputError(f"{file}: item #{pos}: question/answer: missing or not a string")
            choices = rec.get("choices")
            if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
                raise InputError(f"{file}: item #{pos}: choices: missing or not a list of strings")
            if not CLICK_MIN_CHOICES <= len(choices) <= CLICK_MAX_CHOICES:
                dropped["choice count"] += 1
                continue
            if rec["answer"] not in choices:
                dropped["answer not a choice"] += 1
                continue
            question = _mc_question(rec["question"], choices)
            _, parsed = parse_options(question)
            if len(parsed) != len(choices):
                dropped["options do not round-trip"] += 1
                continue
            item = QAItem(
                id=f"click:{rel.with_suffix('').as_posix()}:{rec.get('id', pos)}",
                category=f"CLIcK {category}",
                domain=domain,
                question_type=MC,
                topic_keyword="",
                question=question,
                answer=str(choices.index(rec["answer"]) + 1),
            )
            paragraph = (rec.get("paragraph") or "").strip()
            contexts = [Passage(title=domain, text=paragraph)] if use_context and paragraph else []
            out.append(SourceItem(item=item, source="click", contexts=contexts))
    if dropped:
        log.warning("CLIcK %s: dropped %s", root, dict(dropped))
    return out


def convert_squad(path: str | Path, use_context: bool = True, category: str = "KorQuAD", source: str = "squad",
                  keep: Callable[[dict[str, Any]], bool] | None = None) -> list[SourceItem]:
    """SQuAD v1 / KorQuAD (and the sets in that format: ETRI MRC, TyDi QA GoldP) -> 단답형 items; distinct gold spans
    become '#'-joined alternatives, as in NIKL. ``keep`` selects questions (TyDi QA: one language)."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{file}: SQuAD/KorQuAD file not found")
    data = _read_json(file)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise InputError(f"{file}: data: expected a SQuAD object with a 'data' array")
    out: list[SourceItem] = []
    unanswerable = 0
    for article in data["data"]:
        title = str(article.get("title", "")).replace("_", " ")
        for para in article.get("paragraphs", []):
            context = para.get("context", "")
            for qa in para.get("qas", []):
                if keep is not None and not keep(qa):
                    continue
                spans = [a["text"].strip() for a in qa.get("answers", []) if a.get("text", "").strip()]
                if qa.get("is_impossible") or not spans:
                    unanswerable += 1
                    continue
                if not isinstance(qa.get("question"), str) or "id" not in qa:
                    raise InputError(f"{file}: article {title!r}: qas: question/id missing")
                answer = "#".join(dict.fromkeys(s.replace("#", " ") for s in spans))
                item = QAItem(
                    id=f"{source}:{qa['id']}",
                    category=category,
                    domain="위키백과",
                    question_type=SHORT,
                    topic_keyword=title,
                    question=qa["question"].strip(),
                    answer=answer,
                )
                contexts = [Passage(title=title, text=context)] if use_context and context.strip() else []
                out.append(SourceItem(item=item, source=source, contexts=contexts))
    if unanswerable:
        log.info("SQuAD %s: skipped %d questions without an answer span", file, unanswerable)
    return out


def load_nikl(path: str | Path, source: str = "nikl") -> list[SourceItem]:
    """A NIKL-format file as is; training needs answers, so an item without one is an error naming it."""
    return [SourceItem(item=item, source=source) for item in load_items(path, require_answers=True)]


def sample(items: list[SourceItem], limit: int | None, seed: int) -> list[SourceItem]:
    """A seeded subset that keeps the file order, so a limit gives the same items on every run."""
    if limit is None or limit >= len(items):
        return items
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=limit, replace=False))
    return [items[i] for i in keep]


def load_external(ext: ExternalSet, path: Path, seed: int, n_train: int | None = None) -> list[SourceItem]:
    """Convert one configured external set (``path`` already resolved against the project), then keep ``limit``
    items, or ``ratio`` x ``n_train`` (the NIKL train items) when a mixing ratio is set."""
    from krqa.training import converters

    if ext.kind == "click":
        items = convert_click(path, use_context=ext.use_context)
    elif ext.kind == "squad":
        items = convert_squad(path, use_context=ext.use_context)
    elif ext.kind == "kmmlu":
        items = converters.convert_kmmlu(path)
    elif ext.kind == "koalpaca":
        items = converters.convert_koalpaca(path)
    elif ext.kind == "tydiqa":
        items = converters.convert_tydiqa(path, use_context=ext.use_context)
    elif ext.kind == "etri_mrc":
        items = converters.convert_etri_mrc(path, use_context=ext.use_context)
    else:
        items = load_nikl(path, source=f"nikl:{Path(path).name}")
    limit = ext.limit
    if ext.ratio is not None and n_train is not None:
        wanted = max(1, round(ext.ratio * n_train))
        if wanted > len(items):
            log.warning("%s %s: ratio %.3g asks for %d items, the set has %d; using all", ext.kind, path, ext.ratio, wanted, len(items))
        limit = min(wanted, limit) if limit is not None else wanted
    return sample(items, limit, seed)


def examples_per_source(sources: list[SourceItem], alternatives: str, mc_target: str = "number") -> dict[str, int]:
    """Training examples each source contributes (a 단답형 item with 'each' alternatives counts once per spelling)."""
    counts: Counter[str] = Counter()
    for src in sources:
        counts[src.source] += len(training_targets(src.item, alternatives, mc_target))
    return dict(counts)


def training_targets(item: QAItem, alternatives: str, mc_target: str = "number") -> list[str]:
    """The answer strings an item is trained on: 단답형 '#' alternatives give the first, or each one; a 선다형
    answer is its option number, or the option's text when inference scores option texts (``mc_target`` 'text' or
    'cloze')."""
    if item.answer is None:
        return []
    if item.question_type == MC and mc_target in ("text", "cloze") and item.options and item.answer.strip().isdigit():
        n = int(item.answer)
        return [item.options[n - 1]] if 1 <= n <= len(item.options) else []
    if item.question_type != SHORT:
        return [item.answer.strip()] if item.answer.strip() else []
    alts = split_alternatives(item.answer)
    return alts[:1] if alternatives == "first" else alts

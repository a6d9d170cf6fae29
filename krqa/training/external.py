"""Training questions in the NIKL item schema: where each came from, the passages it carries, its targets.

Everything downstream (prompt builder, answer post-processing, metrics) speaks ``QAItem``, so other datasets are
turned into NIKL items once (the converter table in :mod:`krqa.training.converters`) instead of teaching each
stage another format. A converted item may bring its own passage (a CLIcK paragraph, a SQuAD context): the
question is often unanswerable without it, so it is shown to the model as a context exactly like a retrieved
passage would be.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from krqa.qa.data import MC, SHORT, QAItem, load_items, split_alternatives

log = logging.getLogger(__name__)

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


def mc_question(stem: str, choices: list[str]) -> str:
    """NIKL 선다형 layout: the stem, then ``N<TAB>option`` markers after a newline."""
    return stem.strip() + "\n " + " ".join(f"{i}\t{c}" for i, c in enumerate(choices, 1))


def load_nikl(path: str | Path, source: str = "nikl") -> list[SourceItem]:
    """A NIKL-format file as is; training needs answers, so an item without one is an error naming it."""
    return [SourceItem(item=item, source=source) for item in load_items(path, require_answers=True)]


def sample(items: list[SourceItem], limit: int | None, seed: int) -> list[SourceItem]:
    """A seeded subset that keeps the file order, so a limit gives the same items on every run."""
    if limit is None or limit >= len(items):
        return items
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=limit, replace=False))
    return [items[i] for i in keep]


def examples_per_source(sources: list[SourceItem], alternatives: str, mc_target: str = "number") -> dict[str, int]:
    """Training examples each source contributes (a 단답형 item with 'each' alternatives counts once per spelling)."""
    counts: Counter[str] = Counter()
    for src in sources:
        counts[src.source] += len(training_targets(src.item, alternatives, mc_target))
    return dict(counts)


def as_target(item: QAItem, answer: str, mc_target: str) -> str | None:
    """A 선다형 answer in the form training targets take: the option's text when inference scores option texts
    (``mc_target`` 'text' or 'cloze'), else as given; None for a number that is none of the item's options.
    Answers of the other types are returned as given."""
    if item.question_type == MC and mc_target in ("text", "cloze") and item.options and answer.strip().isdigit():
        n = int(answer)
        return item.options[n - 1] if 1 <= n <= len(item.options) else None
    return answer


def training_targets(item: QAItem, alternatives: str, mc_target: str = "number") -> list[str]:
    """The answer strings an item is trained on: 단답형 '#' alternatives give the first, or each one; a 선다형
    answer takes the form :func:`as_target` gives it."""
    if item.answer is None:
        return []
    if item.question_type == MC:
        target = as_target(item, item.answer.strip(), mc_target)
        return [target.strip()] if target and target.strip() else []
    if item.question_type != SHORT:
        return [item.answer.strip()] if item.answer.strip() else []
    alts = split_alternatives(item.answer)
    return alts[:1] if alternatives == "first" else alts

"""The NIKL 한국문화 질의응답 data model.

Items are ``{id, input: {category, domain, question_type, topic_keyword, question}, output: {answer}}``;
``output`` is absent in test files. 선다형 options sit inline in the question as ``N<TAB>text`` after a
newline, where both the newline and the tab are often the two-character escapes ``\\n`` / ``\\t``.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from krqa.errors import InputError
from krqa.fsutil import atomic_write_json, read_json

QuestionType = Literal["선다형", "단답형", "서술형"]
QUESTION_TYPES: tuple[str, ...] = get_args(QuestionType)
MC, SHORT, DESC = QUESTION_TYPES
INPUT_FIELDS = ("category", "domain", "question_type", "topic_keyword", "question")
MIN_OPTIONS, MAX_OPTIONS = 2, 9

_SPLIT_NAMES = ("train", "dev", "test")


class QAFormatError(InputError):
    """A malformed NIKL file; the message names the file, item id and field."""


def normalize_escapes(text: str) -> str:
    """Turn literal ``\\n``/``\\t`` into real newline/tab so one parser handles both spellings."""
    return text.replace("\\n", "\n").replace("\\t", "\t")


def parse_options(question: str) -> tuple[str, list[str]]:
    """Split a 선다형 question into its stem and its options.

    Markers are ``1<TAB>``, ``2<TAB>`` … in order, each at the start or after whitespace; searching for
    them in sequence keeps numbers inside option text (``34위 2<TAB>32위``) from being read as markers.
    Returns ``(stem, [])`` when no run of at least two numbered options is found.
    """
    text = normalize_escapes(question)
    positions: list[tuple[int, int]] = []
    cursor = 0
    number = 1
    while number <= MAX_OPTIONS:
        match = _marker(number).search(text, cursor)
        if not match and number > 2:
            # A repeated number ("3\t 지연 3\t 인연" in the 2025 test file) is a typo for the next option.
            match = _marker(number - 1).search(text, cursor)
        if not match:
            break
        positions.append((match.start(), match.end()))
        cursor = match.end()
        number += 1
    if len(positions) < MIN_OPTIONS:
        return question.strip(), []
    stem = _clean_option(text[: positions[0][0]])
    options = []
    for i, (_, end) in enumerate(positions):
        stop = positions[i + 1][0] if i + 1 < len(positions) else len(text)
        options.append(_clean_option(text[end:stop]))
    return stem, options


def _marker(number: int) -> re.Pattern[str]:
    return re.compile(rf"(?:^|(?<=\s)){number}\t")


def _clean_option(text: str) -> str:
    text = text.replace("\u200b", " ")
    text = re.sub(r"\s+", " ", text).strip()
    return text.rstrip(",").strip()


def split_alternatives(answer: str) -> list[str]:
    """단답형 gold answers list accepted spellings joined by ``#``."""
    return [a.strip() for a in answer.split("#") if a.strip()]


@dataclass
class QAItem:
    """One competition question; ``answer`` is None for test items."""

    id: str
    category: str
    domain: str
    question_type: str
    topic_keyword: str
    question: str
    answer: str | None = None
    stem: str = ""
    options: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.question_type == MC:
            self.stem, self.options = parse_options(self.question)
        elif not self.stem:
            self.stem = normalize_escapes(self.question).strip()

    @property
    def alternatives(self) -> list[str]:
        if self.answer is None:
            return []
        return split_alternatives(self.answer) if self.question_type == SHORT else [self.answer]

    def to_json(self, answer: str | None = None) -> dict[str, Any]:
        """The competition record; ``answer`` (when given) replaces the gold answer, as in a prediction file."""
        out: dict[str, Any] = {
            "id": self.id,
            "input": {name: getattr(self, name) for name in INPUT_FIELDS},
        }
        value = answer if answer is not None else self.answer
        if value is not None:
            out["output"] = {"answer": value}
        return out


def _fail(path: str, item_id: str | None, fld: str, msg: str) -> QAFormatError:
    where = f"item {item_id!r}" if item_id is not None else "file"
    return QAFormatError(f"{path}: {where}: {fld}: {msg}")


def parse_item(raw: Any, path: str, index: int, require_answer: bool = False, check_mc_answer: bool = True,
               strict_options: bool = True) -> QAItem:
    """Validate one record; errors name the file, the item id (or position) and the field.

    ``check_mc_answer=False`` accepts any string as a 선다형 answer: a prediction file is scored as the
    official scorer does (a malformed answer is wrong), not refused. ``strict_options=False`` keeps a 선다형
    question whose options cannot be parsed (it is answered by generation)."""
    if not isinstance(raw, dict):
        raise _fail(path, f"#{index}", "<item>", "expected an object")
    item_id = raw.get("id")
    if not isinstance(item_id, (str, int)) or isinstance(item_id, bool) or str(item_id).strip() == "":
        raise _fail(path, f"#{index}", "id", "missing or not a string")
    item_id = str(item_id)
    inp = raw.get("input")
    if not isinstance(inp, dict):
        raise _fail(path, item_id, "input", "missing or not an object")
    values: dict[str, str] = {}
    for name in INPUT_FIELDS:
        value = inp.get(name)
        if not isinstance(value, str):
            raise _fail(path, item_id, f"input.{name}", "missing or not a string")
        values[name] = value
    if values["question_type"] not in QUESTION_TYPES:
        raise _fail(path, item_id, "input.question_type", f"unknown type {values['question_type']!r} (expected one of {', '.join(QUESTION_TYPES)})")
    if not values["question"].strip():
        raise _fail(path, item_id, "input.question", "empty")
    answer: str | None = None
    if "output" in raw and raw["output"] is not None:
        out = raw["output"]
        if not isinstance(out, dict) or not isinstance(out.get("answer"), str):
            raise _fail(path, item_id, "output.answer", "missing or not a string")
        answer = out["answer"]
    elif require_answer:
        raise _fail(path, item_id, "output.answer", "missing (answers are required here)")
    item = QAItem(id=item_id, answer=answer, **values)
    if item.question_type == MC:
        if not item.options:
            if strict_options:
                raise _fail(path, item_id, "input.question", "선다형 question without parseable options ('1\\t…' markers)")
            return item
        if check_mc_answer and answer is not None and not (answer.strip().isdigit() and 1 <= int(answer) <= len(item.options)):
            raise _fail(path, item_id, "output.answer", f"{answer!r} is not an option number 1..{len(item.options)}")
    return item


def load_json_array(path: str | os.PathLike[str]) -> list[Any]:
    p = Path(path)
    if not p.is_file():
        raise QAFormatError(f"{p}: file not found")
    data = read_json(p, QAFormatError)
    if not isinstance(data, list):
        raise QAFormatError(f"{p}: expected a JSON array of items")
    return data


def load_items(path: str | os.PathLike[str], require_answers: bool = False, check_mc_answers: bool = True,
               strict_options: bool = True) -> list[QAItem]:
    """Load and validate a NIKL-format file; duplicate ids are an error because predictions match by id."""
    raw = load_json_array(path)
    items: list[QAItem] = []
    seen: set[str] = set()
    for i, record in enumerate(raw):
        item = parse_item(record, str(path), i, require_answer=require_answers, check_mc_answer=check_mc_answers, strict_options=strict_options)
        if item.id in seen:
            raise _fail(str(path), item.id, "id", "duplicate id")
        seen.add(item.id)
        items.append(item)
    return items


def save_items(items: list[QAItem], path: str | os.PathLike[str], answers: list[str] | None = None) -> None:
    """Write a NIKL-format file atomically; with ``answers`` this is a submission in the input's order."""
    if answers is not None and len(answers) != len(items):
        raise ValueError("answers must align with items")
    records = [item.to_json(answers[i] if answers is not None else None) for i, item in enumerate(items)]
    atomic_write_json(path, records)


def guess_split(path: str | os.PathLike[str]) -> str:
    name = Path(path).name.lower()
    for split in _SPLIT_NAMES:
        if split in name:
            return split
    return "unknown"


def stats(items: list[QAItem], path: str | os.PathLike[str]) -> dict[str, Any]:
    """Counts a team checks before training: by type, category and domain, and option parsing coverage."""
    mc = [i for i in items if i.question_type == MC]
    return {
        "file": str(path),
        "split": guess_split(path),
        "items": len(items),
        "with_answers": sum(1 for i in items if i.answer is not None),
        "by_type": {t: sum(1 for i in items if i.question_type == t) for t in QUESTION_TYPES},
        "by_category": dict(Counter(i.category for i in items).most_common()),
        "by_domain": dict(Counter(i.domain for i in items).most_common()),
        "mc_options_parsed": sum(1 for i in mc if i.options),
        "mc_option_counts": {str(k): v for k, v in sorted(Counter(len(i.options) for i in mc).items())},
        "short_with_alternatives": sum(1 for i in items if i.question_type == SHORT and len(i.alternatives) > 1),
    }

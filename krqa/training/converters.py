"""More external training sets as NIKL items: KMMLU (CSV), KoAlpaca (JSON/JSONL), TyDi QA GoldP Korean and ETRI MRC
(SQuAD-format JSON).

Each converter reads the file format the set is distributed in and yields :class:`SourceItem` records exactly like
the CLIcK and SQuAD converters in krqa.training.external, so the rest of training never sees another schema. Rows
that would teach a wrong answer (an answer outside the options, an empty output) are dropped and counted.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from krqa.errors import InputError
from krqa.qa.data import DESC, MC, QAItem, parse_options
from krqa.training.external import SourceItem, _mc_question, _read_json, convert_squad

log = logging.getLogger(__name__)

KMMLU_OPTIONS = ("A", "B", "C", "D")


def _files(root: Path, pattern: str, what: str) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise InputError(f"{root}: {what} file or directory not found")
    files = sorted(root.rglob(pattern))
    if not files:
        raise InputError(f"{root}: no {what} {pattern} files found")
    return files


def convert_kmmlu(path: str | Path) -> list[SourceItem]:
    """KMMLU CSV (``question, answer, A, B, C, D, Category, Human Accuracy``; ``answer`` is the option number 1-4)
    -> 선다형 items; a directory is read as all its ``*.csv`` files (one per subject)."""
    root = Path(path)
    out: list[SourceItem] = []
    dropped: Counter[str] = Counter()
    for file in _files(root, "*.csv", "KMMLU"):
        try:
            with file.open(encoding="utf-8", newline="") as fh:
                reader = csv.DictReader(fh)
                missing = {"question", "answer", *KMMLU_OPTIONS} - set(reader.fieldnames or [])
                if missing:
                    raise InputError(f"{file}: line 1: KMMLU header lacks column(s) {', '.join(sorted(missing))}")
                for row in reader:
                    line = reader.line_num
                    choices = [(row.get(k) or "").strip() for k in KMMLU_OPTIONS]
                    answer = (row.get("answer") or "").strip()
                    if not answer.isdigit() or not 1 <= int(answer) <= len(choices):
                        raise InputError(f"{file}: line {line}: answer: {answer!r} is not an option number 1-4")
                    if not row["question"].strip() or not all(choices):
                        dropped["empty question or option"] += 1
                        continue
                    question = _mc_question(row["question"], choices)
                    if len(parse_options(question)[1]) != len(choices):
                        dropped["options do not round-trip"] += 1
                        continue
                    subject = (row.get("Category") or file.stem.rsplit("-", 1)[0]).strip()
                    item = QAItem(id=f"kmmlu:{file.stem}:{line}", category="KMMLU", domain=subject, question_type=MC,
                                  topic_keyword="", question=question, answer=str(int(answer)))
                    out.append(SourceItem(item=item, source="kmmlu"))
        except UnicodeDecodeError as exc:
            raise InputError(f"{file}: not valid UTF-8 at byte {exc.start}") from None
        except csv.Error as exc:
            raise InputError(f"{file}: CSV error: {exc}") from None
    if dropped:
        log.warning("KMMLU %s: dropped %s", root, dict(dropped))
    return out


def _jsonl(file: Path) -> list[Any]:
    rows = []
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InputError(f"{file}: line {n}: invalid JSON: {exc.msg}") from None
    return rows


def convert_koalpaca(path: str | Path) -> list[SourceItem]:
    """KoAlpaca ``{instruction, input?, output}`` records (v1.0 JSON array or v1.1 JSON Lines) -> 서술형 items: the
    instruction (and its input) is the question, the output the reference answer."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{file}: KoAlpaca file not found")
    try:
        records = _jsonl(file) if file.suffix == ".jsonl" else _read_json(file)
    except UnicodeDecodeError as exc:
        raise InputError(f"{file}: not valid UTF-8 at byte {exc.start}") from None
    if not isinstance(records, list):
        raise InputError(f"{file}: expected a JSON array (or .jsonl lines) of KoAlpaca records")
    out: list[SourceItem] = []
    empty = 0
    for pos, rec in enumerate(records):
        if not isinstance(rec, dict) or not isinstance(rec.get("instruction"), str) or not isinstance(rec.get("output"), str):
            raise InputError(f"{file}: record #{pos}: instruction/output: missing or not a string")
        extra = rec.get("input") if isinstance(rec.get("input"), str) else ""
        question = rec["instruction"].strip() + (f"\n{extra.strip()}" if extra.strip() else "")
        if not question or not rec["output"].strip():
            empty += 1
            continue
        item = QAItem(id=f"koalpaca:{file.stem}:{pos}", category="KoAlpaca", domain="일반", question_type=DESC,
                      topic_keyword="", question=question, answer=rec["output"].strip())
        out.append(SourceItem(item=item, source="koalpaca"))
    if empty:
        log.info("KoAlpaca %s: skipped %d records with an empty instruction or output", file, empty)
    return out


def convert_tydiqa(path: str | Path, use_context: bool = True, language: str = "korean") -> list[SourceItem]:
    """TyDi QA GoldP (SQuAD-format JSON over all languages) -> the Korean questions as 단답형 items; ids start with
    the language name (``korean-…``)."""
    items = convert_squad(path, use_context=use_context, category="TyDiQA-ko", source="tydiqa", keep=lambda qa: str(qa.get("id", "")).startswith(f"{language}-"))
    if not items:
        raise InputError(f"{path}: no {language} questions (ids '{language}-…') in this TyDi QA GoldP file")
    return items


def convert_etri_mrc(path: str | Path, use_context: bool = True) -> list[SourceItem]:
    """ETRI 엑소브레인 MRC (SQuAD v1.1-format JSON) -> 단답형 items with their paragraph as the context."""
    return convert_squad(path, use_context=use_context, category="ETRI MRC", source="etri_mrc")

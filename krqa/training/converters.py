"""External training sets as NIKL items, one converter per distributed format, in one table (:data:`CONVERTERS`):
NIKL-format files, CLIcK, SQuAD/KorQuAD, KMMLU (CSV), KoAlpaca (JSON/JSONL), TyDi QA GoldP Korean and ETRI MRC
(SQuAD-format JSON).

Each converter yields :class:`~krqa.training.external.SourceItem` records, so the rest of training never sees
another schema. Rows that would teach a wrong answer (an answer outside the options, an empty output) are dropped
and counted.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from krqa.errors import InputError
from krqa.fsutil import read_json
from krqa.qa.data import DESC, MC, SHORT, QAItem, parse_options
from krqa.squad import iter_squad
from krqa.training.config import ExternalSet
from krqa.training.external import Passage, SourceItem, load_nikl, mc_question, sample

log = logging.getLogger(__name__)

KMMLU_OPTIONS = ("A", "B", "C", "D")


CLICK_MIN_CHOICES, CLICK_MAX_CHOICES = 4, 5


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
        records = read_json(file)
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
            question = mc_question(rec["question"], choices)
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
                  keep: Callable[[str], bool] | None = None) -> list[SourceItem]:
    """SQuAD v1 / KorQuAD (and the sets in that format: ETRI MRC, TyDi QA GoldP) -> 단답형 items; distinct gold spans
    become '#'-joined alternatives, as in NIKL. ``keep`` selects questions by id (TyDi QA: one language)."""
    file = Path(path)
    out: list[SourceItem] = []
    unanswerable = 0
    for q in iter_squad(file):
        if keep is not None and not keep(q.id or ""):
            continue
        title = q.article.replace("_", " ")
        spans = [a.strip() for a in q.answers if a.strip()]
        if q.impossible or not spans:
            unanswerable += 1
            continue
        if not isinstance(q.question, str) or q.id is None:
            raise InputError(f"{file}: article {title!r}: qas: question/id missing")
        answer = "#".join(dict.fromkeys(s.replace("#", " ") for s in spans))
        item = QAItem(id=f"{source}:{q.id}", category=category, domain="위키백과", question_type=SHORT, topic_keyword=title,
                      question=q.question.strip(), answer=answer)
        contexts = [Passage(title=title, text=q.context)] if use_context and q.context.strip() else []
        out.append(SourceItem(item=item, source=source, contexts=contexts))
    if unanswerable:
        log.info("SQuAD %s: skipped %d questions without an answer span", file, unanswerable)
    return out


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
                    question = mc_question(row["question"], choices)
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
        records = _jsonl(file) if file.suffix == ".jsonl" else read_json(file)
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
    items = convert_squad(path, use_context=use_context, category="TyDiQA-ko", source="tydiqa", keep=lambda qid: qid.startswith(f"{language}-"))
    if not items:
        raise InputError(f"{path}: no {language} questions (ids '{language}-…') in this TyDi QA GoldP file")
    return items


def convert_etri_mrc(path: str | Path, use_context: bool = True) -> list[SourceItem]:
    """ETRI 엑소브레인 MRC (SQuAD v1.1-format JSON) -> 단답형 items with their paragraph as the context."""
    return convert_squad(path, use_context=use_context, category="ETRI MRC", source="etri_mrc")


# External set kind (``train.external[].kind``) -> its converter, called with the file or directory and the set's
# ``use_context``. A new kind is one entry here and one name in ExternalSet.kind.
CONVERTERS: dict[str, Callable[[Path, bool], list[SourceItem]]] = {
    "nikl": lambda path, use_context: load_nikl(path, source=f"nikl:{Path(path).name}"),
    "click": lambda path, use_context: convert_click(path, use_context=use_context),
    "squad": lambda path, use_context: convert_squad(path, use_context=use_context),
    "kmmlu": lambda path, use_context: convert_kmmlu(path),
    "koalpaca": lambda path, use_context: convert_koalpaca(path),
    "tydiqa": lambda path, use_context: convert_tydiqa(path, use_context=use_context),
    "etri_mrc": lambda path, use_context: convert_etri_mrc(path, use_context=use_context),
}


def load_external(ext: ExternalSet, path: Path, seed: int, n_train: int | None = None) -> list[SourceItem]:
    """Convert one configured external set (``path`` already resolved against the project), then keep ``limit``
    items, or ``ratio`` x ``n_train`` (the NIKL train items) when a mixing ratio is set."""
    items = CONVERTERS[ext.kind](path, ext.use_context)
    limit = ext.limit
    if ext.ratio is not None and n_train is not None:
        wanted = max(1, round(ext.ratio * n_train))
        if wanted > len(items):
            log.warning("%s %s: ratio %.3g asks for %d items, the set has %d; using all", ext.kind, path, ext.ratio, wanted, len(items))
        limit = min(wanted, limit) if limit is not None else wanted
    return sample(items, limit, seed)

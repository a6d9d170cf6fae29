"""``krqa eval-retrieval``: Recall@k (document, article, answer string) and MRR on SQuAD-format QA; answer-hit@k per
question type, category and domain on NIKL-format questions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from krqa.cli.common import ConfigOpt, JsonOpt, SetOpt, get_config, print_json
from krqa.config import KrqaConfig
from krqa.errors import InputError
from krqa.index.answer_hits import QUERY_VARIANTS, evaluate_answer_hits
from krqa.index.config import MODES
from krqa.log import progress_disabled
from krqa.qa.data import DESC, MC, QUESTION_TYPES, SHORT, load_items
from krqa.qa.scorer.lexical import make_tokenizer


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{flag} {text!r}: expected comma-separated integers, e.g. 1,5,20") from None
    if not values or min(values) < 1:
        raise InputError(f"{flag} {text!r}: values must be positive")
    return values


def eval_retrieval(
    qa: Annotated[Path, typer.Option("--qa", help="SQuAD/KorQuAD-format JSON whose paragraphs are in the index, or a NIKL-format file with answers (format detected).")],
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    index: Annotated[Optional[Path], typer.Option("--index", help="Index directory (default: index.dir).", show_default=False)] = None,
    top_k: Annotated[str, typer.Option("--top-k", help="Cut-offs, comma-separated.")] = "1,5,20",
    modes: Annotated[Optional[str], typer.Option("--modes", help="Comma-separated modes (default: all the index supports).", show_default=False)] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Evaluate only the first N questions.", show_default=False)] = None,
    query: Annotated[Optional[str], typer.Option("--query", help="NIKL files: query variants, comma-separated: question, topic+question (default: as retrieval.query.use_topic_keyword).", show_default=False)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Score BM25, dense and hybrid retrieval against the gold paragraphs of a SQuAD-format file, or by
    answer-hit@k on NIKL-format questions.

    SQuAD: build the index from the same file first (krqa build-index --corpus FILE.json --out DIR).
    NIKL: 단답형 = a # alternative occurs in the top-k passages; 선다형 = the gold option's text does (distractors'
    rate beside it); 서술형 = ROUGE-1 recall of the gold answer against the top-k passages concatenated.
    """
    from krqa.index.evaluate import detect_qa_format  # start-up time: `krqa --help` imports every command module
    from krqa.wiring import open_index  # start-up time: `krqa --help` imports every command module

    ks = _ints(top_k, "--top-k")
    fmt = detect_qa_format(qa)
    if query is not None and fmt != "nikl":
        raise InputError(f"--query: only for NIKL-format files; {qa} is SQuAD-format")
    cfg = get_config(config, overrides)
    mode_list = [m.strip() for m in modes.split(",") if m.strip()] if modes else None
    if fmt == "nikl":
        _eval_nikl(qa, cfg, index, ks, mode_list, query, limit, json_out)
        return
    from krqa.corpus.sources import squad_questions  # start-up time, as above
    from krqa.index.evaluate import evaluate_retrieval  # start-up time, as above

    retriever = open_index(cfg, index)
    if max(ks) * 2 > cfg.retrieval.max_top_k:
        raise InputError(f"--top-k {max(ks)}: at most {cfg.retrieval.max_top_k // 2} (retrieval.max_top_k / 2)")
    questions = squad_questions(qa)
    if limit is not None:
        questions = questions[:limit]
    if not questions:
        raise InputError(f"{qa}: no questions")
    gold = {d for _, _, d in questions}
    indexed = set(retriever.table.column("doc_id").unique().to_pylist())
    missing = len(gold - indexed)
    results = evaluate_retrieval(retriever, questions, ks, mode_list)
    if json_out:
        print_json({"qa": str(qa), "index": str(retriever.root), "questions": len(questions), "gold_docs_missing_from_index": missing, "modes": results})
        return

    if missing:
        typer.echo(f"warning: {missing} of {len(gold)} gold documents are not in the index (built from another file?)", err=True)
    table = Table(title=f"{qa.name}: {len(questions)} questions")
    cols = [f"{kind}_recall@{k}" for kind in ("doc", "article", "answer") for k in ks] + ["mrr"]
    table.add_column("mode")
    for c in cols:
        table.add_column(c.replace("_recall", " R"), justify="right")
    for mode, m in results.items():
        table.add_row(mode, *[f"{m[c]:.3f}" for c in cols])
    Console().print(table)


def _eval_nikl(qa: Path, cfg: KrqaConfig, index: Path | None, ks: list[int], modes: list[str] | None, query: str | None,
               limit: int | None, json_out: bool) -> None:
    from tqdm import tqdm  # start-up time: `krqa --help` imports every command module

    from krqa.wiring import open_index  # start-up time: `krqa --help` imports every command module

    if query is None:
        variants = ["topic+question" if cfg.retrieval.query.use_topic_keyword else "question"]
    else:
        variants = list(dict.fromkeys(v.strip() for v in query.split(",") if v.strip()))
        bad = [v for v in variants if v not in QUERY_VARIANTS]
        if bad or not variants:
            raise InputError(f"--query {query!r}: expected comma-separated {', '.join(QUERY_VARIANTS)}")
    items = load_items(qa, require_answers=True)[:limit]
    if not items:
        raise InputError(f"{qa}: no questions")
    retriever = open_index(cfg, index)
    if max(ks) > cfg.retrieval.max_top_k:
        raise InputError(f"--top-k {max(ks)}: at most {cfg.retrieval.max_top_k} (retrieval.max_top_k)")
    modes = modes or list(retriever.modes)
    for mode in modes:
        if mode not in MODES:
            raise InputError(f"--modes {mode!r}: expected one of {', '.join(MODES)}")
        if mode not in retriever.modes:
            raise InputError(f"--modes {mode!r}: index {retriever.root} has no dense vectors; use bm25")
    tokenizer = make_tokenizer(cfg.evaluate.rouge_tokenizer)
    total = len(modes) * len(variants) * len(items)
    with tqdm(total=total, desc="eval-retrieval", unit="question", disable=progress_disabled()) as bar:
        results = evaluate_answer_hits(retriever, items, ks, modes, variants, cfg.retrieval.query, tokenizer,
                                       progress=bar.update)
    if json_out:
        print_json({"qa": str(qa), "format": "nikl", "index": str(retriever.root), "questions": len(items), "top_k": sorted(set(ks)),
                    "query_options": cfg.retrieval.query.options, "rouge_tokenizer": tokenizer.name,
                    "match": "NFC, whitespace runs collapsed to one space, substring of a passage", "results": results})
        return
    _print_nikl(qa, results, sorted(set(ks)), tokenizer.name)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print_nikl(qa: Path, results: dict[str, dict[str, Any]], ks: list[int], tokenizer: str) -> None:
    console = Console()
    rows = [(SHORT, "hit", "a # alternative in the top-k"), (MC, "hit", "gold option's text in the top-k"),
            (MC, "distractor_hit", "distractors' texts (mean)"), (DESC, "rouge1_recall", "ROUGE-1 recall of the answer")]
    for mode, by_variant in results.items():
        for variant, rep in by_variant.items():
            table = Table(title=f"{qa.name}: {mode}, query {variant}, {rep['questions']} questions")
            table.add_column("type")
            table.add_column("n", justify="right")
            table.add_column("measure")
            for k in ks:
                table.add_column(f"@{k}", justify="right")
            for qtype, metric, label in rows:
                entry = rep["by_type"].get(qtype)
                if entry:
                    table.add_row(qtype, str(entry["questions"]), label, *[_cell(entry[f"{metric}@{k}"]) for k in ks])
            table.add_row("all", str(rep["questions"]), "mean per question",
                          *[_cell(rep[f"score@{k}"]) for k in ks], style="bold")
            console.print(table)
            for key, name in (("by_category", "category"), ("by_domain", "domain")):
                console.print(_breakdown(f"{mode}, query {variant}: by {name}", name, rep[key], ks))
    console.print(f"hit: the string occurs (NFC, whitespace collapsed) in one of the top-k passages; 선다형 cells in the "
                  f"breakdowns are gold/distractors; 서술형: ROUGE-1 recall over {tokenizer} morphemes against the top-k "
                  "passages concatenated; all: the mean per question of the hit or the recall.")


def _breakdown(title: str, name: str, groups: dict[str, Any], ks: list[int]) -> Any:
    """One row per (value, question type), so the table stays narrow however many values and cut-offs there are."""
    table = Table(title=title)
    for col in (name, "type", "n"):
        table.add_column(col, justify="right" if col == "n" else "left")
    for k in ks:
        table.add_column(f"@{k}", justify="right")
    for value, rep in groups.items():
        present = [t for t in QUESTION_TYPES if t in rep["by_type"]]
        for j, qtype in enumerate(present):
            entry = rep["by_type"][qtype]
            if "distractor_hit@" + str(ks[0]) in entry:
                cells = [f"{entry[f'hit@{k}']:.3f}/{entry[f'distractor_hit@{k}']:.3f}" for k in ks]
            else:
                metric = "rouge1_recall" if f"rouge1_recall@{ks[0]}" in entry else "hit"
                cells = [_cell(entry[f"{metric}@{k}"]) for k in ks]
            table.add_row(value if j == 0 else "", qtype, str(entry["questions"]), *cells, end_section=j == len(present) - 1)
    return table

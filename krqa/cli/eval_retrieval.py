"""``krqa eval-retrieval``: Recall@k (document, article, answer string) and MRR on SQuAD-format QA."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from krqa.cli.common import ConfigOpt, JsonOpt, SetOpt, get_config, print_json
from krqa.errors import InputError


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{flag} {text!r}: expected comma-separated integers, e.g. 1,5,20") from None
    if not values or min(values) < 1:
        raise InputError(f"{flag} {text!r}: values must be positive")
    return values


def eval_retrieval(
    qa: Annotated[Path, typer.Option("--qa", help="SQuAD/KorQuAD-format JSON whose paragraphs are in the index.")],
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    index: Annotated[Optional[Path], typer.Option("--index", help="Index directory (default: index.dir).", show_default=False)] = None,
    top_k: Annotated[str, typer.Option("--top-k", help="Cut-offs, comma-separated.")] = "1,5,20",
    modes: Annotated[Optional[str], typer.Option("--modes", help="Comma-separated modes (default: all the index supports).", show_default=False)] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Evaluate only the first N questions.", show_default=False)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Score BM25, dense and hybrid retrieval against the gold paragraphs of a SQuAD-format file.

    Build the index from the same file first: krqa build-index --corpus FILE.json --out DIR.
    """
    from krqa.corpus.sources import squad_questions  # start-up time: `krqa --help` imports every command module
    from krqa.index.evaluate import evaluate_retrieval  # start-up time: `krqa --help` imports every command module
    from krqa.wiring import open_index  # start-up time: `krqa --help` imports every command module

    ks = _ints(top_k, "--top-k")
    cfg = get_config(config, overrides)
    retriever = open_index(cfg, index)
    if max(ks) * 2 > cfg.retrieval.max_top_k:
        raise InputError(f"--top-k {max(ks)}: at most {cfg.retrieval.max_top_k // 2} (retrieval.max_top_k / 2)")
    questions = squad_questions(qa)
    if limit is not None:
        questions = questions[:limit]
    if not questions:
        raise InputError(f"{qa}: no questions")
    mode_list = [m.strip() for m in modes.split(",") if m.strip()] if modes else None
    gold = {d for _, _, d in questions}
    indexed = set(retriever.table.column("doc_id").unique().to_pylist())
    missing = len(gold - indexed)
    results = evaluate_retrieval(retriever, questions, ks, mode_list)
    if json_out:
        print_json({"qa": str(qa), "index": str(retriever.root), "questions": len(questions), "gold_docs_missing_from_index": missing, "modes": results})
        return
    from rich.console import Console
    from rich.table import Table

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

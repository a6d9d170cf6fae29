"""``krqa evaluate``: official scores of a prediction file against a gold file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from krqa.cli.common import ConfigOpt, JsonOpt, SetOpt, get_config, print_json
from krqa.qa.data import load_items
from krqa.qa.scorer import score


def evaluate(
    pred: Annotated[Path, typer.Option("--pred", help="Prediction file (NIKL format, output.answer filled).", show_default=False)],
    gold: Annotated[Path, typer.Option("--gold", help="Gold file with answers (e.g. the dev set).", show_default=False)],
    no_model_metrics: Annotated[bool, typer.Option("--no-model-metrics", help="Skip BERTScore and BLEURT (reported as skipped; the official final is then unavailable).")] = False,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Official scores: 선다형 accuracy, 단답형 exact match, 서술형 ROUGE-1 / BERTScore / BLEURT, and the final.

    The official numbers follow the organisers' rules exactly: 선다형 answers are compared as raw strings
    (" 3" and "3번" are wrong; answers that are not an option number are counted wrong and listed), 단답형
    exact match strips only the ends of the answer and of each '#' alternative. Lenient variants are shown
    beside them, labelled not official. Predictions and gold are matched by id; a missing, extra or duplicate
    id, or a question_type that differs, stops with a one-line error and exit code 2. A model metric that cannot be loaded offline is
    reported UNAVAILABLE with the reason, never as 0.
    """
    cfg = get_config(config, overrides, {"evaluate.model_metrics": ("--no-model-metrics", False if no_model_metrics else None)})
    gold_items = load_items(gold, require_answers=True)
    pred_items = load_items(pred, require_answers=True, check_mc_answers=False)
    report = score(pred_items, gold_items, cfg.evaluate, pred_name=str(pred), gold_name=str(gold))
    report = {"pred": str(pred), "gold": str(gold), **report}
    if json_out:
        print_json(report)
    else:
        _print_tables(report)


def _fmt(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.4f}"


def _print_tables(report: dict[str, Any]) -> None:
    console = Console()
    types = report["by_type"]
    table = Table(title=f"krqa evaluate: {report['pred']} vs {report['gold']} ({report['n']} items)")
    table.add_column("type")
    table.add_column("n", justify="right")
    table.add_column("metric")
    table.add_column("score", justify="right")
    mc, short, desc = types["선다형"], types["단답형"], types["서술형"]
    table.add_row("선다형", str(mc["n"]), "accuracy (raw strings)", _fmt(mc.get("accuracy")))
    table.add_row("", "", "accuracy, whitespace stripped (not official)", _fmt(mc.get("accuracy_lenient_not_official")))
    table.add_row("단답형", str(short["n"]), "exact match (ends stripped)", _fmt(short.get("exact_match")))
    table.add_row("", "", "exact match, all spaces removed (not official)", _fmt(short.get("exact_match_no_space_not_official")))
    table.add_row("", "", "relaxed match (not official)", _fmt(short.get("relaxed_match_not_official")))
    unavailable = report["unavailable"]
    for metric, label in (("rouge1", "ROUGE-1 F1 (morphemes)"), ("bertscore", "BERTScore F1"), ("bleurt", "BLEURT")):
        value = desc.get(metric)
        shown = "UNAVAILABLE ¹" if metric in unavailable else _fmt(value)
        table.add_row("서술형" if metric == "rouge1" else "", str(desc["n"]) if metric == "rouge1" else "", label, shown)
    table.add_row("", "", "mean of the three", _fmt(desc.get("desc_mean")))
    table.add_section()
    table.add_row("final", "", "×100 (leaderboard)", "UNAVAILABLE (partial)" if report["final_x100"] is None else f"{report['final_x100']:.2f}")
    if report["final_x100"] is None or report["types_missing"]:
        table.add_row("", "", "over available metrics (NOT comparable)", _fmt_x100(report["final_available_x100"]))
    console.print(table)
    console.print(f"ROUGE tokenizer: {report['rouge_tokenizer'] or '— (no 서술형 items)'}")
    if report["invalid_mc_answers"]:
        console.print(f"[yellow]{len(report['invalid_mc_answers'])} 선다형 answer(s) not an option number, counted wrong: "
                      f"{', '.join(report['invalid_mc_answers'])}[/yellow]")
    for metric, reason in unavailable.items():
        console.print(f"¹ {metric} UNAVAILABLE: {reason}")
    if report["types_missing"]:
        console.print(f"[yellow]types absent from gold: {', '.join(report['types_missing'])}; final is the mean over present types[/yellow]")
    for group in ("by_domain", "by_category"):
        breakdown = Table(title=group.replace("by_", "by "))
        for col in (group[3:], "n", "선다형 acc", "단답형 EM", "서술형 mean", "final ×100"):
            breakdown.add_column(col, justify="left" if col == group[3:] else "right")
        for name, rep in report[group].items():
            bt = rep["by_type"]
            desc_cell = bt["서술형"].get("desc_mean") if rep["final"] is not None else bt["서술형"].get("desc_mean_available")
            final_cell = rep["final_x100"] if rep["final"] is not None else rep["final_available_x100"]
            breakdown.add_row(
                name, str(rep["n"]), _fmt(bt["선다형"].get("accuracy")), _fmt(bt["단답형"].get("exact_match")),
                _fmt(desc_cell), _fmt_x100(final_cell) + ("" if rep["final"] is not None else " *"),
            )
        console.print(breakdown)
    if any(rep["final"] is None for g in ("by_domain", "by_category") for rep in report[g].values()):
        console.print("* over available metrics only, not comparable with the leaderboard")


def _fmt_x100(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.2f}"

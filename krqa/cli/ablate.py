"""``krqa ablate``: a grid of answering variants on one QA file, with bootstrap intervals and paired tests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from krqa.cli.common import ConfigOpt, JsonOpt, SetOpt, get_config, print_json
from krqa.errors import InputError


def _adapters(specs: list[str] | None, base: bool, runs: list[Path] | None = None) -> dict[str, str | None]:
    from krqa.ablation import run_adapters  # start-up time: `krqa --help` imports every command module

    out: dict[str, str | None] = {"base": None} if base else {}
    for run in runs or []:
        found = run_adapters(run)
        out.update({(f"{run.name}: {k}" if len(runs or []) > 1 else k): v for k, v in found.items()})
    for spec in specs or []:
        name, sep, path = spec.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise InputError(f"--adapter {spec!r}: expected NAME=DIR, e.g. stage2=runs/demo/stage2/adapter")
        out[name.strip()] = path.strip()
    if not out:
        raise InputError("no models to compare: give --adapter NAME=DIR or --run DIR, or drop --no-base")
    return out


def _csv(text: str, cast: Any, flag: str) -> list[Any]:
    try:
        return [cast(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{flag} {text!r}: expected a comma-separated list") from None


def ablate(
    qa: Annotated[Path, typer.Option("--qa", help="NIKL-format questions WITH gold answers (dev set, held-out reading set).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for predictions (kept by fingerprint), ablation.json and ablation.png.")] = Path("outputs/ablate"),
    adapter: Annotated[Optional[list[str]], typer.Option("--adapter", help="NAME=DIR of a LoRA adapter to compare (repeatable), e.g. stage1=runs/x/stage1/adapter.", show_default=False)] = None,
    run: Annotated[Optional[list[Path]], typer.Option("--run", help="A krqa train run directory: one row per finished adapter (stage 1, stage 2, stage 2 + DPO, stage 2 + GRPO); repeatable.", show_default=False)] = None,
    no_base: Annotated[bool, typer.Option("--no-base", help="Leave out the base model without adapter.")] = False,
    rag: Annotated[str, typer.Option("--rag", help="Retrieval rows: both, on or off.")] = "both",
    mc_mode: Annotated[str, typer.Option("--mc-mode", help="선다형 modes to compare: generate, score or both (comma-separated).")] = "generate,score",
    permutations: Annotated[int, typer.Option("--permutations", help="Also a 'score×N' row that averages N cyclic option orders (1: none).", min=1, max=9)] = 1,
    top_k: Annotated[str, typer.Option("--top-k", help="Passages per question for RAG rows (comma-separated; default retrieval.top_k).")] = "",
    variants: Annotated[Optional[Path], typer.Option("--variants", help="YAML list of variants {name, rag, adapter, top_k, set: {key: value}} instead of the grid flags.", show_default=False)] = None,
    baseline: Annotated[Optional[str], typer.Option("--baseline", help="Row the others are compared with (default: the first).", show_default=False)] = None,
    sample: Annotated[Optional[int], typer.Option("--sample", help="At most N items of each question type (seeded), for a quick run.", min=1, show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for --sample and the bootstrap.")] = 0,
    resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap resamples.", min=100)] = 2000,
    model_metrics: Annotated[bool, typer.Option("--model-metrics/--no-model-metrics", help="Run BERTScore and BLEURT for 서술형 (need their models locally); off: ROUGE-1 only, labelled not official.")] = False,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Answer the same questions with every variant and show what each change adds, with 95% intervals.

    The default grid crosses the models (base and each --adapter) with no-RAG/RAG and the 선다형 modes. Per-type
    official scores and the final come with 95% bootstrap intervals (items resampled within each type) and a
    paired bootstrap p-value against --baseline. Predictions are kept by fingerprint under --out, so a second run,
    or one after an interruption, answers only what is missing.
    """
    from krqa import ablation  # start-up time: `krqa --help` imports every command module

    cfg = get_config(config, overrides)
    if variants is not None:
        rows = ablation.read_variants(variants)
    else:
        if rag not in ("both", "on", "off"):
            raise InputError(f"--rag {rag!r}: expected both, on or off")
        modes = ["generate", "score"] if mc_mode == "both" else _csv(mc_mode, str, "--mc-mode")
        bad = [m for m in modes if m not in ("generate", "score")]
        if bad:
            raise InputError(f"--mc-mode {mc_mode!r}: expected generate, score or both")
        ks = _csv(top_k, int, "--top-k") or [None]
        rag_rows = {"both": [False, True], "on": [True], "off": [False]}[rag]
        rows = ablation.grid(_adapters(adapter, not no_base, run), rag_rows, modes, ks, permutations)
    result = ablation.ablate(cfg, qa, rows, out, baseline=baseline, per_type=sample, seed=seed, n_boot=resamples,
                        model_metrics=model_metrics, config_hint=str(config) if config else "<your config>")
    if json_out:
        print_json({k: v for k, v in result.items() if k != "config"})
        return
    print_table(result)


def _cell(s: dict[str, float] | None) -> str:
    return "—" if s is None else f"{s['value']:.3f} [{s['low']:.3f}, {s['high']:.3f}]"


def print_table(result: dict[str, Any]) -> None:
    desc_label = "서술형" if result["official"] else "서술형 ROUGE-1 ²"
    table = Table(title=f"krqa ablate: {result['qa']} ({result['items']} items: " + ", ".join(f"{t} {n}" for t, n in result["by_type"].items() if n) + ")")
    recall = any(r.get("span_recall") for r in result["rows"])
    for col in ("variant", "선다형 acc", "단답형 EM", *(["단답형 candidate recall ³"] if recall else []), desc_label, "final ¹", "Δ final vs baseline", "p"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for r in result["rows"]:
        vs = r["vs_baseline"]
        delta = "baseline" if vs is None else f"{vs['delta']:+.3f} [{vs['low']:+.3f}, {vs['high']:+.3f}]"
        p = "" if vs is None else f"{vs['p_value']:.3f}"
        sc = r["scores"]
        table.add_row(r["name"], _cell(sc.get("선다형")), _cell(sc.get("단답형")), *([_cell(r.get("span_recall"))] if recall else []),
                      _cell(sc.get("서술형")), _cell(sc.get("final")), delta, p)
    console = Console(width=None if Console().is_terminal else 170)
    console.print(table)
    console.print("¹ mean of the per-type scores over the types present; \\[low, high] = 95% bootstrap interval; p = paired bootstrap, two-sided.")
    if not result["official"] and result["by_type"].get("서술형"):
        console.print("² BERTScore/BLEURT not run (--no-model-metrics): 서술형 and final are NOT the official numbers.")
    if recall:
        console.print("³ 단답형 items whose gold answer was among the candidate spans scored (0 where generation answered).")
    console.print(f"chart: {result['chart']}   details: {Path(result['chart']).with_name('ablation.json')}")

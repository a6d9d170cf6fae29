"""``krqa predict``: answer a NIKL file and write the competition submission (resumable)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from krqa.cli.common import ConfigOpt, JsonOpt, SetOpt, get_config, print_json
from krqa.errors import InputError
from krqa.fsutil import check_output_file
from krqa.index.types import SearchParams


def predict(
    input_path: Annotated[Path, typer.Option("--input", "-i", help="NIKL-format questions (test or dev file).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Submission to write; side files <output>.details.jsonl and <output>.progress.jsonl.", show_default=False)],
    adapter: Annotated[Optional[str], typer.Option("--adapter", help="LoRA adapter directory (default: model.adapter).", show_default=False)] = None,
    rag: Annotated[Optional[bool], typer.Option("--rag/--no-rag", help="Put retrieved passages in the prompt (default: predict.rag).", show_default=False)] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", "-k", help="Passages per question (default: retrieval.top_k).", show_default=False)] = None,
    mode: Annotated[Optional[str], typer.Option("--mode", "-m", help="Retriever: bm25, dense or hybrid (default: retrieval.mode).", show_default=False)] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Answer only the first N items (a partial file); rerun without it to finish.", show_default=False)] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from <output>.progress.jsonl when it matches the input and settings.")] = True,
    backend: Annotated[Optional[str], typer.Option("--backend", help="transformers or vllm (default: generation.backend).", show_default=False)] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop on a 선다형 item whose options cannot be parsed (default: answer it by generation and count it).")] = False,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Answer every question of --input; the submission keeps the input's order, ids and count.

    Answered items are appended to <output>.progress.jsonl, so an interrupted run resumes where it stopped (a
    progress file from another input or other settings is refused). Raw generations, the passages used, prompt
    lengths and timings go to <output>.details.jsonl.
    """
    from krqa.generation.predict import side_paths  # start-up time: `krqa --help` imports every command module
    from krqa.wiring import run_predict  # start-up time: `krqa --help` imports every command module

    for path in (output, *side_paths(output)):  # found now, not after hours of generation
        check_output_file(path, "--output", "submission.json")
    cfg = get_config(config, overrides, {"predict.rag": ("--rag", rag), "generation.backend": ("--backend", backend)})
    report = run_predict(cfg, input_path, output, adapter=adapter, search=SearchParams(top_k, mode), limit=limit, resume=resume,
                         strict=strict, config_hint=str(config) if config else "<your config>")
    if json_out:
        print_json(report)
        return
    if report["mc_fallbacks"]:
        typer.echo(f"{len(report['mc_fallbacks'])} 선다형 items without parseable options were answered by generation: {', '.join(report['mc_fallbacks'][:10])}", err=True)
    qpm = f", {report['questions_per_min']} questions/min" if report["questions_per_min"] else ""
    typer.echo(
        f"wrote {report['output']}: {report['items']} of {report['input_items']} items "
        f"({report['answered_now']} answered now, {report['resumed']} from progress{qpm}, rag={'on' if report['rag'] else 'off'}); "
        f"details in {report['details']}"
    )

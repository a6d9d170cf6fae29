"""``krqa train``, read top to bottom: plan, the selected stages' checks, start the run's records, each stage
through the one runner, finish the records.

Which stages exist, what each checks and how each builds its trainer is the stage table
(:mod:`krqa.training.stages`); the Trainer mechanics every stage shares (resume, skip-if-finished, early stopping,
the metrics record) are :func:`krqa.training.stage.run_stage`; the checks every stage shares are
:mod:`krqa.training.plan`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from krqa.config import KrqaConfig, dump_config
from krqa.errors import KrqaError
from krqa.generation.config import effective_mc_target
from krqa.generation.lm import load_tokenizer
from krqa.qa.prompts import PromptBuilder
from krqa.training.plan import Plan, make_plan
from krqa.training.plot import plot_loss_curve
from krqa.training.run import RunDir
from krqa.training.stage import StageContext, run_stage, stage_summary
from krqa.training.stages import STAGES, select

log = logging.getLogger(__name__)


def plan_run(cfg: KrqaConfig, stage: str = "all", rag: bool = False, resume: bool = False, config_path: str | None = None) -> Plan:
    """The stages ``--stage`` selects, the checks every stage shares, then each selected stage's own checks."""
    names = select(stage, rag)
    plan = make_plan(cfg, names, rag=rag, resume=resume, config_path=config_path)
    for name in names:
        STAGES[name].check(plan)
    return plan


def train(cfg: KrqaConfig, rag: bool = False, stage: str = "all", resume: bool = False, config_path: str | None = None) -> dict[str, Any]:
    """Plan (all input checks), then run the selected stages; the entry point the CLI calls."""
    plan = plan_run(cfg, stage, rag=rag, resume=resume, config_path=config_path)
    try:
        return execute(plan)
    except KrqaError:
        raise
    except (OSError, RuntimeError) as exc:
        raise KrqaError(f"training failed in {plan.run.root}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (re-run with --resume to continue from the last checkpoint)") from exc


def execute(plan: Plan) -> dict[str, Any]:
    """Run the planned stages in order; returns a summary (paths, per-stage loss and time) for the CLI."""
    from accelerate import PartialState  # start-up time: accelerate (about a second on top of torch) loads only when stages run

    state = PartialState()
    cfg, run = plan.cfg, plan.run
    if state.is_main_process:
        start_records(plan)
    state.wait_for_everyone()

    tokenizer = load_tokenizer(cfg.model)
    mc_target = effective_mc_target(cfg.generation)
    ctx = StageContext(plan, tokenizer, PromptBuilder(cfg.prompt, tokenizer, mc_target=mc_target), mc_target, state.is_main_process)
    summary: dict[str, Any] = {"run_dir": str(run.root), "stages": {}}
    for name in plan.stages:
        spec = STAGES[name]
        record = run_stage(plan, spec, spec.prepare(ctx, spec))
        summary["stages"][name] = stage_summary(record)
    if ctx.is_main:
        summary.update(finish_records(run))
    return summary


def start_records(plan: Plan) -> None:
    """The resolved config and where the run came from (code, base model, data hashes), before any training."""
    plan.run.root.mkdir(parents=True, exist_ok=True)
    plan.run.write_config(dump_config(plan.cfg))
    plan.run.record_start(Path(plan.cfg.base_dir).resolve(), plan.cfg.model.base, str(plan.base_path), plan.data_hashes)


def finish_records(run: RunDir) -> dict[str, Any]:
    """The loss curve of every stage trained so far in this run directory, and where the metrics are."""
    plot = plot_loss_curve(run.metrics(), run.plot_path, [(s.name, s.label, s.color) for s in STAGES.values()])
    return {"loss_curve": str(plot) if plot else None, "metrics": str(run.metrics_path)}

"""The one stage runner: every training stage (SFT stage 1 and 2, DPO, GRPO, and any stage added to the table in
:mod:`krqa.training.stages`) is trained, resumed, skipped and recorded here.

A stage hands the runner a :class:`StageJob`: what its data and stage-specific settings are (for the
fingerprint), how to build its transformers/TRL trainer, and which dev metric picks its best adapter. The runner
gives it checkpoints for ``--resume``, early stopping on dev, the best adapter written atomically, the
``metrics.json`` record with its loss history, and the skip of a stage that already finished on the same inputs.

Skip-if-finished compares a fingerprint of the stage's data, the base model, the adapter it continues and its
settings, not a step count: a changed training file retrains even when ``max_steps`` fixes the step count, and the
record says which of the four changed. The stage's length (epochs, max_steps) is left out of the fingerprint, so a
run cut short by ``max_steps`` continues from its checkpoint when asked to run longer.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from krqa.errors import KrqaError
from krqa.fsutil import atomic_dir, json_sha, normalize_modes
from krqa.log import progress_disabled
from krqa.training import lora
from krqa.training.config import TrainConfig
from krqa.training.plan import Plan
from krqa.training.run import hash_path

log = logging.getLogger(__name__)

# TrainConfig fields every stage's training depends on (the stage's own section is added by the runner); the
# others (paths, logging, checkpoint count, the other stages' sections) do not change what a stage learns.
SHARED_SETTINGS = ("lora", "qlora", "batch_size", "grad_accum", "max_seq_len", "scheduler", "warmup_ratio", "weight_decay",
                   "gradient_checkpointing", "packing", "group_by_length", "early_stopping_patience", "seed")
LENGTH_FIELDS = ("epochs", "max_steps")
# The parts of the fingerprint, in the words a retraining message uses for them.
PARTS = {"data": "its data", "settings": "its settings", "base": "the base model", "upstream": "the adapter it continues"}


@dataclass(frozen=True)
class StageSpec:
    """One row of the stage table: everything the planner, runner, plot, ablation and CLI need to know.

    ``settings`` picks the stage's config section (it must have ``epochs``, ``learning_rate``, ``max_steps``);
    ``check`` runs the stage's input checks before any model loads (it may load inputs into the plan);
    ``prepare`` builds the :class:`StageJob` once the stages before it have run; ``cli`` is the ``--stage`` value
    that selects it alone; ``color`` is its colour in the loss curve; ``label_after_upstream`` names its
    ablation row after the adapter it continued ('stage 2 + DPO', 'stage 1 + DPO').
    """

    name: str
    label: str
    cli: str
    settings: Callable[[TrainConfig], Any]
    check: Callable[[Plan], None]
    prepare: Callable[[StageContext, StageSpec], StageJob]
    color: str
    label_after_upstream: bool = False


@dataclass
class StageContext:
    """What every stage of one ``krqa train`` shares: the plan, the tokenizer and the prompt builder."""

    plan: Plan
    tokenizer: Any
    builder: Any
    mc_target: str
    is_main: bool


@dataclass
class StageJob:
    """A stage ready to train.

    ``fingerprint`` holds the stage's data (or a hash of it) and any setting the stage derives outside its
    section; ``make_trainer(callbacks)`` builds the trainer (model loading included); ``metric`` on dev chooses
    the best checkpoint; ``series`` maps record keys to per-step log keys kept beside the loss (DPO's reward
    accuracy, GRPO's rewards); ``upstream`` is the adapter it continues, ``base`` the base its adapter belongs to
    when that is not ``model.base`` (the merged base of stage2_init=merge); ``info`` goes into the record as is.
    """

    fingerprint: dict[str, Any]
    make_trainer: Callable[[list[Any]], Any]
    has_dev: bool
    metric: str = "eval_loss"
    greater_is_better: bool = False
    series: dict[str, str] = field(default_factory=dict)
    callbacks: list[Any] = field(default_factory=list)
    upstream: Path | None = None
    base: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)


def renamed_args(tc: TrainConfig) -> dict[str, Any]:
    """The TrainingArguments fields transformers 4.x and 5.x spell differently, for SFT and the TRL stages alike."""
    from transformers import TrainingArguments  # start-up time: transformers loads only when a stage trains

    fields = TrainingArguments.__dataclass_fields__
    # transformers 5 renamed gradient_checkpointing to activation_checkpointing; 4.x only knows the old name
    ckpt = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    # transformers 5 takes the warmup ratio as a float warmup_steps and has no warmup_ratio; 4.x has both, and
    # there warmup_steps is an integer step count
    warmup = {"warmup_ratio": tc.warmup_ratio} if "warmup_ratio" in fields else {"warmup_steps": tc.warmup_ratio}
    return {ckpt: tc.gradient_checkpointing, f"{ckpt}_kwargs": {"use_reentrant": False} if tc.gradient_checkpointing else None, **warmup}


def shared_args(plan: Plan, spec: StageSpec, metric: str | None, greater_is_better: bool | None) -> dict[str, Any]:
    """TrainingArguments fields that SFT and the TRL stages (whose configs subclass TrainingArguments) set alike:
    schedule, precision, per-epoch dev evaluation with the best checkpoint kept at the end (when ``metric`` is
    given), logging, seeds. Every precision field is set explicitly: TRL's configs default to bf16 and gradient
    checkpointing, which a CPU run must not inherit."""
    tc, sc = plan.cfg.train, spec.settings(plan.cfg.train)
    has_dev = metric is not None
    scheduler = tc.scheduler if tc.scheduler != "constant" else ("constant_with_warmup" if tc.warmup_ratio > 0 else "constant")
    return {
        "output_dir": str(plan.run.checkpoints(spec.name)),
        "per_device_eval_batch_size": tc.batch_size,
        "gradient_accumulation_steps": tc.grad_accum,
        "learning_rate": sc.learning_rate,
        "num_train_epochs": sc.epochs,
        "max_steps": sc.max_steps,
        "lr_scheduler_type": scheduler,
        "weight_decay": tc.weight_decay,
        "bf16": plan.precision == "bf16",
        "fp16": plan.precision == "fp16",
        "use_cpu": not torch.cuda.is_available(),
        "eval_strategy": "epoch" if has_dev else "no",
        "save_strategy": "epoch",
        "save_total_limit": tc.save_total_limit,
        "load_best_model_at_end": has_dev,
        "metric_for_best_model": metric,
        "greater_is_better": greater_is_better,
        "logging_steps": tc.logging_steps,
        "logging_first_step": True,
        "report_to": "none",
        "seed": tc.seed,
        "data_seed": tc.seed,
        "disable_tqdm": progress_disabled(),
        "dataloader_num_workers": 0,
        **renamed_args(tc),
    }


def fingerprint_parts(plan: Plan, spec: StageSpec, job: StageJob) -> dict[str, str]:
    """A hash per part a finished stage depends on: data, settings, base model, the adapter it continues."""
    tc = plan.cfg.train
    section = spec.settings(tc).model_dump(mode="json", exclude=set(LENGTH_FIELDS))
    shared = {k: getattr(tc, k) for k in SHARED_SETTINGS}
    base = job.base if job.base is not None else plan.base_path
    return {
        "data": json_sha(job.fingerprint),
        "settings": json_sha({"section": section, "train": shared, "precision": plan.precision}),
        "base": json_sha({"name": plan.cfg.model.base, "path": str(base)}),
        "upstream": hash_path(job.upstream) if job.upstream is not None else "",
    }


def retrain_reason(previous: dict[str, Any], parts: dict[str, str]) -> str | None:
    """Why a stage that finished before is trained again on --resume (None: it may be kept)."""
    if not previous.get("finished"):
        return None
    before = previous.get("fingerprint_parts")
    if not isinstance(before, dict):
        return "its record predates fingerprints"
    changed = [PARTS[k] for k in PARTS if before.get(k) != parts[k]]
    return " and ".join(changed) + " changed" if changed else None


def history(log_history: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The logged values of ``key`` as ``{step, epoch, loss}`` points (train loss per logging step, dev per epoch)."""
    return [{"step": h["step"], "epoch": round(h.get("epoch", 0.0), 4), "loss": h[key]} for h in log_history if key in h]


def usual_modes_callback() -> Any:
    """A Trainer callback that gives each saved checkpoint the usual modes (0644/0755 under umask 022): the
    Trainer writes checkpoints itself, and safetensors leaves its files 0600."""
    from transformers import TrainerCallback  # start-up time: as above

    class UsualModes(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and checkpoint.is_dir():
                normalize_modes(checkpoint)

    return UsualModes()


def _save_adapter(trainer: Any, target: Path, is_main: bool) -> None:
    """Every process joins the save (DeepSpeed gathers sharded weights); only the main one writes, atomically.
    TRL keeps DPO's frozen reference as a second adapter named 'ref'; the stage's adapter is 'default' only."""
    if is_main:
        with atomic_dir(target) as tmp:
            trainer.save_model(str(tmp))
            shutil.rmtree(Path(tmp) / "ref", ignore_errors=True)
    else:
        trainer.save_model(str(target))
    trainer.accelerator.wait_for_everyone()


def run_stage(plan: Plan, spec: StageSpec, job: StageJob) -> dict[str, Any]:
    """Train ``spec`` (or keep it when --resume finds it finished on the same inputs); write and return its record."""
    from accelerate import PartialState  # start-up time: accelerate loads only when a stage trains
    from transformers import EarlyStoppingCallback  # start-up time: transformers loads only when a stage trains

    state = PartialState()
    run, stage, tc = plan.run, spec.name, plan.cfg.train
    sc = spec.settings(tc)
    parts = fingerprint_parts(plan, spec, job)
    fingerprint = json_sha(parts)
    length = [sc.epochs, sc.max_steps]
    previous = run.metrics().get(stage, {})
    reason = retrain_reason(previous, parts) if plan.resume else None
    if (plan.resume and reason is None and previous.get("finished") and previous.get("length") == length
            and (run.adapter(stage) / "adapter_config.json").is_file()):
        log.info("%s: already finished on the same data, base, adapter and settings; keeping %s", stage, run.adapter(stage))
        return {**previous, "skipped": True}
    if reason is not None:
        log.warning("%s: retraining: %s since the finished run", stage, reason)
    checkpoint = run.latest_checkpoint(stage) if plan.resume else None
    if checkpoint is not None and previous.get("fingerprint") != fingerprint:
        log.info("%s: the checkpoints are for other data, base, adapter or settings; training from the start", stage)
        checkpoint = None
    elif checkpoint is None and plan.resume:
        log.info("%s: no checkpoint to resume from, training from the start", stage)
    if checkpoint is None and state.is_main_process:
        shutil.rmtree(run.checkpoints(stage), ignore_errors=True)
    state.wait_for_everyone()
    if state.is_main_process:
        run.write_stage_metrics(stage, {"finished": False, "fingerprint": fingerprint, "fingerprint_parts": parts, "length": length})

    callbacks = [*job.callbacks, usual_modes_callback()]
    if job.has_dev and tc.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=tc.early_stopping_patience))
    trainer = job.make_trainer(callbacks)
    params = lora.trainable_summary(trainer.model)
    log.info("%s: %d/%d trainable parameters%s", stage, params["trainable_params"], params["total_params"],
             f", resuming from {checkpoint}" if checkpoint else "")
    started = time.time()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except (KrqaError, KeyboardInterrupt):
        raise
    except (OSError, RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise KrqaError(f"{stage} training failed in {run.root}: {type(exc).__name__}: {first} (re-run with --resume to continue from the last checkpoint)") from exc
    elapsed = time.time() - started
    target = run.adapter(stage)
    _save_adapter(trainer, target, state.is_main_process)

    log_history = trainer.state.log_history
    train_hist, dev_hist = history(log_history, "loss"), history(log_history, "eval_loss")
    best_key = job.metric if job.metric.startswith("eval_") else f"eval_{job.metric}"
    dev_metric = [{"step": h["step"], "epoch": round(h.get("epoch", 0.0), 4), "value": h[best_key]} for h in log_history if best_key in h]
    best = (max if job.greater_is_better else min)(dev_metric, key=lambda p: p["value"]) if dev_metric else None
    record: dict[str, Any] = {
        "finished": True,
        "fingerprint": fingerprint,
        "fingerprint_parts": parts,
        "length": length,
        "retrained_because": reason,
        "planned_steps": trainer.state.max_steps,
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0.0, 4),
        "stopped_early": trainer.state.global_step < trainer.state.max_steps,
        "resumed_from": str(checkpoint) if checkpoint else None,
        "init_adapter": str(job.upstream) if job.upstream is not None else None,
        "train_loss": train_hist,
        "dev_loss": dev_hist,
        "dev_metric": {"name": best_key, "greater_is_better": job.greater_is_better, "history": dev_metric},
        "best_epoch": best["epoch"] if best else None,
        "best_dev_loss": min((p["loss"] for p in dev_hist), default=None),
        "best_dev_metric": best["value"] if best else None,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "tokens_seen": int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0),
        "time_s": round(elapsed, 2),
        "train_runtime_s": round(result.metrics.get("train_runtime", elapsed), 2),
        "adapter": str(target),
        "precision": plan.precision,
        **{name: [{"step": h["step"], "value": h[key]} for h in log_history if key in h] for name, key in job.series.items()},
        **params,
        **job.info,
    }
    results = [r for cb in callbacks for r in getattr(cb, "results", None) or []]
    if results:
        record["eval_generate"] = results
    if job.base is not None and job.base != plan.base_path and state.is_main_process:
        lora.set_adapter_base(target, str(job.base))
        record["base_for_adapter"] = str(job.base)
    if state.is_main_process:
        run.write_stage_metrics(stage, record)
    return record


def stage_summary(record: dict[str, Any]) -> dict[str, Any]:
    """The few numbers a person reads about a stage, from its metrics.json record (fresh or from an earlier run)."""
    train = record.get("train_loss") or []
    dev_metric = (record.get("dev_metric") or {}).get("name")
    return {
        "adapter": record.get("adapter"),
        "skipped": bool(record.get("skipped")),
        "retrained_because": record.get("retrained_because"),
        "steps": record.get("steps"),
        "first_train_loss": train[0]["loss"] if train else None,
        "last_train_loss": train[-1]["loss"] if train else None,
        "best_epoch": record.get("best_epoch"),
        "best_dev_loss": record.get("best_dev_loss"),
        "dev_metric": dev_metric,
        "best_dev_metric": record.get("best_dev_metric"),
        "init_adapter": record.get("init_adapter"),
        "time_s": record.get("time_s"),
        **({"base_for_adapter": record["base_for_adapter"]} if "base_for_adapter" in record else {}),
    }

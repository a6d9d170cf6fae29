"""Running a TRL trainer as a krqa stage: checkpoints for --resume, early stopping on dev, metrics, loss curve.

The stage directory (``dpo/`` or ``grpo/``) holds ``checkpoints/`` (TRL/transformers checkpoints with optimizer,
scheduler and RNG state) and ``adapter/`` (the best adapter on dev, written atomically at the end). A stage whose
record says it finished on the same data and settings is kept on --resume; otherwise --resume continues from the
latest checkpoint, and a run without --resume starts over.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from krqa.config import dump_config
from krqa.errors import KrqaError
from krqa.fsutil import atomic_dir
from krqa.training import lora
from krqa.training.rlplan import RlPlan
from krqa.training.stage import shared_args, usual_modes_callback

log = logging.getLogger(__name__)


def common_args(plan: RlPlan, out_dir: Path, metric: str, greater_is_better: bool) -> dict[str, Any]:
    """The TrainingArguments fields shared with SFT (``stage.shared_args``), dev evaluation by ``metric``."""
    return shared_args(plan.cfg.train, plan.stage_cfg, out_dir, plan.precision, metric, greater_is_better)


def history(log_history: list[dict[str, Any]], key: str, eval_key: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    train = [{"step": h["step"], "epoch": round(h.get("epoch", 0.0), 4), "loss": h[key]} for h in log_history if key in h]
    dev = [{"step": h["step"], "epoch": round(h.get("epoch", 0.0), 4), "loss": h[eval_key]} for h in log_history if eval_key in h]
    return train, dev


def run_stage(plan: RlPlan, fingerprint: str, make_trainer: Callable[[list[Any]], Any], info: dict[str, Any],
              metric: str, greater_is_better: bool, extra_series: dict[str, str]) -> dict[str, Any]:
    """Train (or keep a finished run of the same fingerprint), save the best adapter, return the stage record.

    ``fingerprint`` hashes the data and every setting but the stage's length (epochs, max_steps), so a run cut short
    by max_steps resumes from its checkpoint when asked to run longer. ``make_trainer(callbacks)`` builds the TRL trainer; ``extra_series`` maps record keys to log keys kept as
    per-step series (GRPO's reward, DPO's reward accuracy).
    """
    from accelerate import PartialState
    from transformers import EarlyStoppingCallback

    from krqa.training.plot import plot_loss_curve

    state = PartialState()
    run, stage, tc = plan.run, plan.stage, plan.cfg.train
    previous = run.metrics().get(stage, {})
    length = [plan.stage_cfg.epochs, plan.stage_cfg.max_steps]
    if (plan.resume and previous.get("finished") and previous.get("fingerprint") == fingerprint and previous.get("length") == length
            and (run.adapter(stage) / "adapter_config.json").is_file()):
        log.info("%s: already finished on the same data and settings, keeping %s", stage, run.adapter(stage))
        return {**previous, "skipped": True}
    checkpoint = run.latest_checkpoint(stage) if plan.resume else None
    if checkpoint is not None and previous.get("fingerprint") not in (None, fingerprint):
        log.info("%s: checkpoints are for other data/settings, training from the start", stage)
        checkpoint = None
    if checkpoint is None and state.is_main_process:
        shutil.rmtree(run.checkpoints(stage), ignore_errors=True)
    state.wait_for_everyone()
    if state.is_main_process:
        run.write_config(dump_config(plan.cfg))
        run.record_start(Path(plan.cfg.base_dir).resolve(), plan.cfg.model.base, str(plan.base_path), plan.data_hashes)
        run.write_stage_metrics(stage, {"finished": False, "fingerprint": fingerprint})
    callbacks: list[Any] = [usual_modes_callback()]
    if tc.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=tc.early_stopping_patience))
    trainer = make_trainer(callbacks)
    params = lora.trainable_summary(trainer.model)
    started = time.time()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except KrqaError:
        raise
    except (OSError, RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise KrqaError(f"{stage} training failed in {run.root}: {type(exc).__name__}: {first} (re-run with --resume to continue from the last checkpoint)") from exc
    elapsed = time.time() - started
    target = run.adapter(stage)
    if state.is_main_process:
        with atomic_dir(target) as tmp:
            trainer.save_model(str(tmp))
            # TRL keeps its frozen reference as a second adapter named 'ref'; the stage's adapter is 'default' only.
            shutil.rmtree(Path(tmp) / "ref", ignore_errors=True)
    else:
        trainer.save_model(str(target))
    trainer.accelerator.wait_for_everyone()
    train_hist, dev_hist = history(trainer.state.log_history, "loss", "eval_loss")
    best_key = metric if metric.startswith("eval_") else f"eval_{metric}"
    dev_metric = [{"step": h["step"], "epoch": round(h.get("epoch", 0.0), 4), "value": h[best_key]} for h in trainer.state.log_history if best_key in h]
    pick = max if greater_is_better else min
    best = pick(dev_metric, key=lambda p: p["value"]) if dev_metric else None
    record = {
        "finished": True,
        "fingerprint": fingerprint,
        "length": length,
        "planned_steps": trainer.state.max_steps,
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0.0, 4),
        "stopped_early": trainer.state.global_step < trainer.state.max_steps,
        "resumed_from": str(checkpoint) if checkpoint else None,
        "init_adapter": str(plan.init_adapter),
        "rag": plan.rag,
        "train_loss": train_hist,
        "dev_loss": dev_hist,
        "dev_metric": {"name": best_key, "greater_is_better": greater_is_better, "history": dev_metric},
        "best_epoch": best["epoch"] if best else None,
        "best_dev_loss": min((p["loss"] for p in dev_hist), default=None),
        "best_dev_metric": best["value"] if best else None,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "time_s": round(elapsed, 2),
        "train_runtime_s": round(result.metrics.get("train_runtime", elapsed), 2),
        "adapter": str(target),
        "precision": plan.precision,
        **{name: [{"step": h["step"], "value": h[key]} for h in trainer.state.log_history if key in h] for name, key in extra_series.items()},
        **params,
        **info,
    }
    if plan.base_path == run.merged_base() and state.is_main_process:
        lora.set_adapter_base(target, str(run.merged_base()))
        record["base_for_adapter"] = str(run.merged_base())
    if state.is_main_process:
        run.write_stage_metrics(stage, record)
        plot_loss_curve(run.metrics(), run.plot_path)
    return record


def train_rl(cfg: Any, stage: str, rag: bool = False, resume: bool = False, config_path: str | None = None) -> dict[str, Any]:
    """``krqa train --stage dpo|grpo``: plan (all input checks), then the stage; a summary shaped like SFT's."""
    from krqa.training.rlplan import plan_rl

    plan = plan_rl(cfg, stage, rag=rag, resume=resume, config_path=config_path)
    if stage == "dpo":
        from krqa.training.preference import train_dpo

        record = train_dpo(plan)
    else:
        from krqa.training.grpo import train_grpo

        record = train_grpo(plan)
    train = record.get("train_loss") or []
    summary = {
        "adapter": record.get("adapter"), "skipped": bool(record.get("skipped")), "steps": record.get("steps"),
        "first_train_loss": train[0]["loss"] if train else None, "last_train_loss": train[-1]["loss"] if train else None,
        "best_epoch": record.get("best_epoch"), "best_dev_loss": record.get("best_dev_loss"),
        "dev_metric": (record.get("dev_metric") or {}).get("name"), "best_dev_metric": record.get("best_dev_metric"),
        "init_adapter": record.get("init_adapter"), "time_s": record.get("time_s"),
        **({"base_for_adapter": record["base_for_adapter"]} if "base_for_adapter" in record else {}),
    }
    return {"run_dir": str(plan.run.root), "stages": {stage: summary}, "metrics": str(plan.run.metrics_path),
            "loss_curve": str(plan.run.plot_path) if plan.run.plot_path.is_file() else None}

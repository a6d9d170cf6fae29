"""One training stage on the transformers ``Trainer``: arguments, encoded data, the run itself and its record.

Every stage (SFT stage 1 and 2, and any stage added later) goes through :func:`run_stage`, which gives it
checkpoints for ``--resume``, gradient accumulation, mixed precision and multi-GPU / DeepSpeed through
``accelerate launch`` without code of our own.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from krqa.fsutil import atomic_dir, normalize_modes
from krqa.log import progress_disabled
from krqa.training import lora
from krqa.training.config import StageConfig, TrainConfig
from krqa.training.data import PadCollator, TrainExample, count_tokens, encode_examples, pack
from krqa.training.plan import Plan

log = logging.getLogger(__name__)


def planned_steps(n_examples: int, tc: TrainConfig, stage_cfg: StageConfig, world_size: int) -> int:
    """The optimizer steps the Trainer will plan (same arithmetic), used to tell a finished stage from a cut one."""
    if stage_cfg.max_steps > 0:
        return int(stage_cfg.max_steps)
    batches = math.ceil(n_examples / (tc.batch_size * world_size))
    per_epoch = batches // tc.grad_accum + int(batches % tc.grad_accum > 0)
    return max(1, math.ceil(stage_cfg.epochs * per_epoch))


def renamed_args(tc: TrainConfig) -> dict[str, Any]:
    """The TrainingArguments fields transformers 4.x and 5.x spell differently, for SFT and the TRL stages alike."""
    from transformers import TrainingArguments

    fields = TrainingArguments.__dataclass_fields__
    # transformers 5 renamed gradient_checkpointing to activation_checkpointing; 4.x only knows the old name
    ckpt = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    # transformers 5 takes the warmup ratio as a float warmup_steps and has no warmup_ratio; 4.x has both, and
    # there warmup_steps is an integer step count
    warmup = {"warmup_ratio": tc.warmup_ratio} if "warmup_ratio" in fields else {"warmup_steps": tc.warmup_ratio}
    return {ckpt: tc.gradient_checkpointing, f"{ckpt}_kwargs": {"use_reentrant": False} if tc.gradient_checkpointing else None, **warmup}


def shared_args(tc: TrainConfig, sc: Any, out_dir: Path, precision: str, metric: str | None, greater_is_better: bool | None) -> dict[str, Any]:
    """TrainingArguments fields that SFT and the TRL stages (whose configs subclass TrainingArguments) set alike:
    schedule, precision, per-epoch dev evaluation with the best checkpoint kept at the end (when ``metric`` is
    given), logging, seeds. Every precision field is set explicitly: TRL's configs default to bf16 and gradient
    checkpointing, which a CPU run must not inherit."""
    import torch

    has_dev = metric is not None
    scheduler = tc.scheduler if tc.scheduler != "constant" else ("constant_with_warmup" if tc.warmup_ratio > 0 else "constant")
    return {
        "output_dir": str(out_dir),
        "per_device_eval_batch_size": tc.batch_size,
        "gradient_accumulation_steps": tc.grad_accum,
        "learning_rate": sc.learning_rate,
        "num_train_epochs": sc.epochs,
        "max_steps": sc.max_steps,
        "lr_scheduler_type": scheduler,
        "weight_decay": tc.weight_decay,
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
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


def training_args(tc: TrainConfig, sc: StageConfig, out_dir: Path, precision: str, has_dev: bool) -> Any:
    from transformers import TrainingArguments

    fields = TrainingArguments.__dataclass_fields__
    # transformers 5 spells length grouping train_sampling_strategy='group_by_length', 4.x group_by_length=True
    grouping = ({"train_sampling_strategy": "group_by_length" if tc.group_by_length else "random"} if "train_sampling_strategy" in fields
                else {"group_by_length": tc.group_by_length})
    return TrainingArguments(
        **shared_args(tc, sc, out_dir, precision, "eval_loss" if has_dev else None, False if has_dev else None),
        per_device_train_batch_size=tc.batch_size,
        prediction_loss_only=True,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        **grouping,
    )


@dataclass
class StageData:
    train: list[dict[str, list[int]]]
    dev: list[dict[str, list[int]]]
    info: dict[str, Any]


def encode_stage(tc: TrainConfig, builder: Any, tokenizer: Any, train_ex: list[TrainExample], dev_ex: list[TrainExample]) -> StageData:
    """Prompt + target token ids of every example (packed when ``train.packing``), and counts for the record."""
    train_enc, train_stats = encode_examples(builder.build_training_pair, tokenizer, train_ex, tc.max_seq_len, progress=not progress_disabled())
    dev_enc, _ = encode_examples(builder.build_training_pair, tokenizer, dev_ex, tc.max_seq_len)
    info = {"examples": len(train_ex), "dev_examples": len(dev_ex), "encode": train_stats.to_json(), **count_tokens(train_enc)}
    if tc.packing:
        train_enc = pack(train_enc, tc.max_seq_len)
        info["packed_sequences"] = len(train_enc)
    return StageData(train_enc, dev_enc, info)


def _history(log_history: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    train = [{"step": h["step"], "epoch": round(h.get("epoch", 0.0), 4), "loss": h["loss"]} for h in log_history if "loss" in h]
    dev = [{"step": h["step"], "epoch": round(h.get("epoch", 0.0), 4), "loss": h["eval_loss"]} for h in log_history if "eval_loss" in h]
    return train, dev


def usual_modes_callback() -> Any:
    """A Trainer callback that gives each saved checkpoint the usual modes (0644/0755 under umask 022): the
    Trainer writes checkpoints itself, and safetensors leaves its files 0600."""
    from transformers import TrainerCallback

    class UsualModes(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and checkpoint.is_dir():
                normalize_modes(checkpoint)

    return UsualModes()


def _save_adapter(trainer: Any, target: Path, is_main: bool) -> None:
    """Every process joins the save (DeepSpeed gathers sharded weights); only the main one writes, atomically."""
    if is_main:
        with atomic_dir(target) as tmp:
            trainer.save_model(str(tmp))
    else:
        trainer.save_model(str(target))
    trainer.accelerator.wait_for_everyone()


def run_stage(plan: Plan, stage: str, data: StageData, tokenizer: Any, init_model: Callable[[], Any], upstream_retrained: bool,
              callbacks: list[Any]) -> dict[str, Any]:
    """Train one stage (or skip it when --resume finds it finished) and return its metrics record."""
    from accelerate import PartialState
    from transformers import EarlyStoppingCallback

    from krqa.training.loss import AnswerLossTrainer

    state = PartialState()
    run, tc = plan.run, plan.cfg.train
    sc = tc.stage1 if stage == "stage1" else tc.stage2
    target_steps = planned_steps(len(data.train), tc, sc, state.num_processes)
    previous = run.metrics().get(stage, {})
    fresh = plan.resume and not upstream_retrained
    if fresh and previous.get("finished") and previous.get("planned_steps") == target_steps and (run.adapter(stage) / "adapter_config.json").is_file():
        log.info("%s: already finished (%d steps), keeping %s", stage, target_steps, run.adapter(stage))
        return {**previous, "skipped": True}
    checkpoint = run.latest_checkpoint(stage) if fresh else None
    if checkpoint is None:
        if plan.resume:
            log.info("%s: no checkpoint to resume from, training from the start", stage)
        if state.is_main_process:
            shutil.rmtree(run.checkpoints(stage), ignore_errors=True)
        state.wait_for_everyone()
    else:
        log.info("%s: resuming from %s", stage, checkpoint)

    has_dev = bool(data.dev)
    args = training_args(tc, sc, run.checkpoints(stage), plan.precision, has_dev)
    model = init_model()
    params = lora.trainable_summary(model)
    log.info("%s: %d examples, %d planned steps, %d/%d trainable parameters", stage, len(data.train), target_steps, params["trainable_params"], params["total_params"])
    callbacks = [*callbacks, usual_modes_callback()]
    if has_dev and tc.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=tc.early_stopping_patience))
    trainer = AnswerLossTrainer(
        model=model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.dev or None,
        data_collator=PadCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id, 8),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    started = time.time()
    with contextlib.redirect_stdout(sys.stderr):
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    elapsed = time.time() - started
    _save_adapter(trainer, run.adapter(stage), state.is_main_process)
    train_hist, dev_hist = _history(trainer.state.log_history)
    best = min(dev_hist, key=lambda p: p["loss"]) if dev_hist else None
    record = {
        "finished": True,
        "planned_steps": target_steps,
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0.0, 4),
        "stopped_early": trainer.state.global_step < target_steps,
        "resumed_from": str(checkpoint) if checkpoint else None,
        "train_loss": train_hist,
        "dev_loss": dev_hist,
        "best_epoch": best["epoch"] if best else None,
        "best_dev_loss": best["loss"] if best else None,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "tokens_seen": int(trainer.state.num_input_tokens_seen),
        "time_s": round(elapsed, 2),
        "train_runtime_s": round(result.metrics.get("train_runtime", elapsed), 2),
        "adapter": str(run.adapter(stage)),
        "precision": plan.precision,
        **params,
        **data.info,
    }
    for cb in callbacks:
        if hasattr(cb, "results") and cb.results:
            record["eval_generate"] = cb.results
    return record

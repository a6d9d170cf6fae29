"""The two-stage LoRA trainer behind ``krqa train``.

Stage 1 (task and knowledge SFT) trains a LoRA adapter on the NIKL train set plus configured external sets,
without retrieved contexts. Stage 2 (``--rag``) starts from the stage-1 adapter and trains on the same NIKL
questions with RAFT-mixed contexts from the retriever ``predict`` uses. Both stages run on the transformers
``Trainer``, which gives checkpoints for ``--resume``, gradient accumulation, mixed precision and multi-GPU /
DeepSpeed through ``accelerate launch -m krqa train …`` without code of our own.

Every check that can fail on bad input (empty data, missing index, base model, adapter mismatch, QLoRA without
a GPU) runs in :func:`plan` before a model is loaded, so a bad invocation costs seconds and writes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from krqa.config import KrqaConfig, dump_config
from krqa.generation.config import mc_answer_style
from krqa.errors import InputError, KrqaError
from krqa.fsutil import atomic_dir, atomic_write_json
from krqa.log import progress_disabled
from krqa.qa.data import MC, QAItem
from krqa.training import lora
from krqa.training.data import PadCollator, TrainExample, count_tokens, encode_examples, pack
from krqa.training.external import SourceItem, examples_per_source, load_external, load_nikl, training_targets
from krqa.training.raft import mix_contexts, summarize
from krqa.training.run import RunDir, hash_path

if TYPE_CHECKING:
    from krqa.index.retriever import Hit

log = logging.getLogger(__name__)

Stage = Literal["1", "2", "all"]


@dataclass
class Plan:
    """Everything validated before training: data, paths, base model and which stages to run how."""

    cfg: KrqaConfig
    run: RunDir
    stages: list[str]
    resume: bool
    precision: str
    base_path: Path
    train_sources: list[SourceItem]
    external_sources: list[SourceItem]
    dev_items: list[QAItem]
    data_hashes: dict[str, str]
    config_path: str | None = None
    notes: list[str] = field(default_factory=list)


def _project_dir(cfg: KrqaConfig) -> Path:
    return Path(cfg.base_dir).resolve()


def _stage_examples(sources: list[SourceItem], alternatives: str, contexts: dict[str, list[Any]] | None = None,
                    mc_target: str = "number") -> list[TrainExample]:
    """One example per training target; ``contexts`` (by item id) replaces the items' own passages."""
    out = []
    for src in sources:
        targets = training_targets(src.item, alternatives, mc_target)
        ctx = contexts[src.item.id] if contexts is not None else src.contexts
        for k, target in enumerate(targets):
            ex_id = src.item.id if len(targets) == 1 else f"{src.item.id}#{k}"
            out.append(TrainExample(ex_id, src.item, target, list(ctx)))
    return out


def _check_index(cfg: KrqaConfig, config_path: str | None) -> None:
    index_dir = cfg.resolve_path(cfg.index.dir)
    if not index_dir.is_dir() or not any(index_dir.iterdir()):
        raise InputError(
            f"{index_dir}: index not found (stage 2 / --rag trains on retrieved contexts); "
            f"build it first: krqa build-index --config {config_path or '<your config>'}"
        )


def _check_resume_bases(cfg: KrqaConfig, run: RunDir, stages: list[str], base_path: Path) -> None:
    """An adapter only fits the base model it was trained on; resuming onto another one must stop here."""
    previous = run.read_json("run.json")
    if previous.get("base_model") and previous["base_model"] != cfg.model.base:
        raise InputError(
            f"{run.root / 'run.json'}: run was trained on base model {previous['base_model']!r}, config has model.base={cfg.model.base!r}; "
            "resume with the run's config or use another --output"
        )
    allowed = {cfg.model.base, str(base_path), str(base_path.resolve()), str(run.merged_base()), str(run.merged_base().resolve())}
    if previous.get("base_model_path"):
        allowed.add(previous["base_model_path"])
    for stage in stages:
        for adapter_dir in (run.latest_checkpoint(stage), run.adapter(stage)):
            if adapter_dir is None:
                continue
            base = lora.adapter_base(adapter_dir)
            if base is not None and base not in allowed:
                raise InputError(
                    f"{adapter_dir / 'adapter_config.json'}: adapter belongs to base model {base!r}, "
                    f"not to model.base={cfg.model.base!r} ({base_path}); resume with the matching config or use another --output"
                )


def plan(cfg: KrqaConfig, rag: bool = False, stage: Stage = "all", resume: bool = False, config_path: str | None = None) -> Plan:
    """Validate the invocation and load the data; raises InputError with a one-line reason on bad input."""
    from krqa.generation.models import resolve_base_model

    tc = cfg.train
    if stage not in ("1", "2", "all"):
        raise InputError(f"--stage: {stage!r} is not one of 1, 2, all")
    stages = ["stage1"] if stage == "1" else ["stage2"] if stage == "2" else (["stage1", "stage2"] if rag else ["stage1"])
    run = RunDir(cfg.resolve_path(tc.output_dir).resolve())
    precision = lora.resolve_precision(tc.precision)
    lora.check_qlora(tc)
    base_path = Path(resolve_base_model(cfg.model))

    train_file = cfg.resolve_path(tc.train_file)
    train_sources = load_nikl(train_file, source="train")
    external_sources: list[SourceItem] = []
    hashes = {f"train_file:{tc.train_file}": hash_path(train_file)}
    for ext in tc.external:
        path = cfg.resolve_path(ext.path)
        external_sources += load_external(ext, path, tc.seed, n_train=len(train_sources))
        if path.exists():
            hashes[f"external:{ext.kind}:{ext.path}"] = hash_path(path)
    dev_items: list[QAItem] = []
    if tc.dev_file:
        dev_path = cfg.resolve_path(tc.dev_file)
        dev_items = [s.item for s in load_nikl(dev_path, source="dev")]
        hashes[f"dev_file:{tc.dev_file}"] = hash_path(dev_path)

    n_stage1 = len(_stage_examples(train_sources + external_sources, tc.short_answer_alternatives))
    if "stage1" in stages and n_stage1 == 0:
        raise InputError(
            f"{train_file}: no training examples after filtering ({len(train_sources)} items, "
            f"{len(external_sources)} from external sets, none with a usable answer)"
        )
    if "stage2" in stages:
        if not _stage_examples(train_sources, tc.short_answer_alternatives):
            raise InputError(f"{train_file}: no stage-2 training examples after filtering ({len(train_sources)} items, none with a usable answer)")
        _check_index(cfg, config_path)
        if tc.stage2_init == "merge" and tc.qlora:
            raise InputError("train.stage2_init=merge cannot merge into a 4-bit QLoRA base; use stage2_init=continue")
        if "stage1" not in stages and not (run.adapter("stage1") / "adapter_config.json").is_file():
            raise InputError(f"{run.adapter('stage1')}: stage-1 adapter not found; run stage 1 first (krqa train --stage 1) or use --stage all")
    if resume:
        _check_resume_bases(cfg, run, stages, base_path)
    return Plan(
        cfg=cfg,
        run=run,
        stages=stages,
        resume=resume,
        precision=precision,
        base_path=base_path,
        train_sources=train_sources,
        external_sources=external_sources,
        dev_items=dev_items,
        data_hashes=hashes,
        config_path=config_path,
    )


def planned_steps(n_examples: int, tc: Any, stage_cfg: Any, world_size: int) -> int:
    """The optimizer steps the Trainer will plan (same arithmetic), used to tell a finished stage from a cut one."""
    if stage_cfg.max_steps > 0:
        return int(stage_cfg.max_steps)
    batches = math.ceil(n_examples / (tc.batch_size * world_size))
    per_epoch = batches // tc.grad_accum + int(batches % tc.grad_accum > 0)
    return max(1, math.ceil(stage_cfg.epochs * per_epoch))


def _training_args(cfg: KrqaConfig, stage: str, out_dir: Path, precision: str, has_dev: bool) -> Any:
    import torch
    from transformers import TrainingArguments

    tc = cfg.train
    sc = tc.stage1 if stage == "stage1" else tc.stage2
    # transformers 5 renamed gradient_checkpointing to activation_checkpointing; 4.x only knows the old name
    ckpt = "activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__ else "gradient_checkpointing"
    scheduler = tc.scheduler if tc.scheduler != "constant" else ("constant_with_warmup" if tc.warmup_ratio > 0 else "constant")
    return TrainingArguments(
        output_dir=str(out_dir),
        per_device_train_batch_size=tc.batch_size,
        per_device_eval_batch_size=tc.batch_size,
        gradient_accumulation_steps=tc.grad_accum,
        learning_rate=sc.learning_rate,
        num_train_epochs=sc.epochs,
        max_steps=sc.max_steps,
        lr_scheduler_type=scheduler,
        warmup_steps=tc.warmup_ratio,
        weight_decay=tc.weight_decay,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        **{ckpt: tc.gradient_checkpointing, f"{ckpt}_kwargs": {"use_reentrant": False} if tc.gradient_checkpointing else None},
        eval_strategy="epoch" if has_dev else "no",
        prediction_loss_only=True,
        save_strategy="epoch",
        save_total_limit=tc.save_total_limit,
        load_best_model_at_end=has_dev,
        metric_for_best_model="eval_loss" if has_dev else None,
        greater_is_better=False if has_dev else None,
        logging_steps=tc.logging_steps,
        logging_first_step=True,
        report_to="none",
        seed=tc.seed,
        data_seed=tc.seed,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=progress_disabled(),
        dataloader_num_workers=0,
        **_length_grouping(TrainingArguments, tc.group_by_length),
    )


def _length_grouping(args_cls: Any, on: bool) -> dict[str, Any]:
    """transformers 5 spells it train_sampling_strategy='group_by_length', 4.x group_by_length=True."""
    if "train_sampling_strategy" in args_cls.__dataclass_fields__:
        return {"train_sampling_strategy": "group_by_length" if on else "random"}
    return {"group_by_length": on}


@dataclass
class _StageData:
    train: list[dict[str, list[int]]]
    dev: list[dict[str, list[int]]]
    info: dict[str, Any]


def _encode(plan_: Plan, builder: Any, tokenizer: Any, train_ex: list[TrainExample], dev_ex: list[TrainExample]) -> _StageData:
    tc = plan_.cfg.train
    train_enc, train_stats = encode_examples(builder.build_training_pair, tokenizer, train_ex, tc.max_seq_len, progress=not progress_disabled())
    dev_enc, _ = encode_examples(builder.build_training_pair, tokenizer, dev_ex, tc.max_seq_len)
    info = {"examples": len(train_ex), "dev_examples": len(dev_ex), "encode": train_stats.to_json(), **count_tokens(train_enc)}
    if tc.packing:
        train_enc = pack(train_enc, tc.max_seq_len)
        info["packed_sequences"] = len(train_enc)
    return _StageData(train_enc, dev_enc, info)


def _history(log_history: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    train = [{"step": h["step"], "epoch": round(h.get("epoch", 0.0), 4), "loss": h["loss"]} for h in log_history if "loss" in h]
    dev = [{"step": h["step"], "epoch": round(h.get("epoch", 0.0), 4), "loss": h["eval_loss"]} for h in log_history if "eval_loss" in h]
    return train, dev


def _save_adapter(trainer: Any, target: Path, is_main: bool) -> None:
    """Every process joins the save (DeepSpeed gathers sharded weights); only the main one writes, atomically."""
    if is_main:
        with atomic_dir(target) as tmp:
            trainer.save_model(str(tmp))
    else:
        trainer.save_model(str(target))
    trainer.accelerator.wait_for_everyone()


def _run_stage(plan_: Plan, stage: str, data: _StageData, tokenizer: Any, init_model: Any, upstream_retrained: bool, extra_callbacks: list[Any]) -> dict[str, Any]:
    """Train one stage (or skip it when --resume finds it finished) and return its metrics record."""
    from accelerate import PartialState
    from transformers import EarlyStoppingCallback

    from krqa.training.loss import AnswerLossTrainer

    state = PartialState()
    cfg, run, tc = plan_.cfg, plan_.run, plan_.cfg.train
    sc = tc.stage1 if stage == "stage1" else tc.stage2
    target_steps = planned_steps(len(data.train), tc, sc, state.num_processes)
    previous = run.metrics().get(stage, {})
    checkpoint = run.latest_checkpoint(stage) if plan_.resume and not upstream_retrained else None
    if (
        plan_.resume
        and not upstream_retrained
        and previous.get("finished")
        and previous.get("planned_steps") == target_steps
        and (run.adapter(stage) / "adapter_config.json").is_file()
    ):
        log.info("%s: already finished (%d steps), keeping %s", stage, target_steps, run.adapter(stage))
        return {**previous, "skipped": True}
    if checkpoint is None:
        if plan_.resume:
            log.info("%s: no checkpoint to resume from, training from the start", stage)
        if state.is_main_process:
            shutil.rmtree(run.checkpoints(stage), ignore_errors=True)
        state.wait_for_everyone()
    else:
        log.info("%s: resuming from %s", stage, checkpoint)

    has_dev = bool(data.dev)
    args = _training_args(cfg, stage, run.checkpoints(stage), plan_.precision, has_dev)
    model = init_model()
    params = lora.trainable_summary(model)
    log.info("%s: %d examples, %d planned steps, %d/%d trainable parameters", stage, len(data.train), target_steps, params["trainable_params"], params["total_params"])
    callbacks = list(extra_callbacks)
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
        "precision": plan_.precision,
        **params,
        **data.info,
    }
    for cb in callbacks:
        if hasattr(cb, "results") and cb.results:
            record["eval_generate"] = cb.results
    return record


def _retrieve(plan_: Plan, items: list[QAItem]) -> tuple[dict[str, list[Hit]], dict[str, Any]]:
    """Main process retrieves (or reuses the cache); the others read the cache it wrote."""
    from accelerate import PartialState

    from krqa.training.contexts import read_cache, retrieve_contexts

    state = PartialState()
    cfg = plan_.cfg
    top_k = max(cfg.train.raft.max_contexts, cfg.retrieval.top_k)
    result: tuple[dict[str, list[Hit]], dict[str, Any]] | None = None
    if state.is_main_process:
        result = retrieve_contexts(cfg, items, plan_.run.contexts_path, top_k)
    state.wait_for_everyone()
    return result if result is not None else read_cache(plan_.run.contexts_path)


def _usable_hits(cfg: KrqaConfig, hits: dict[str, list[Any]], items: list[QAItem]) -> dict[str, list[Any]]:
    """What predict would put in each prompt: nothing for types outside ``predict.rag_types``, only passages at or
    above ``retrieval.min_score``, and for 선다형 option scoring at most ``generation.mc_max_passages``."""
    from krqa.generation.answerer import gate

    rag_types = set(cfg.predict.rag_types)
    mc_cap = cfg.generation.mc_max_passages if cfg.generation.mc_mode == "score" else None

    def usable(item: QAItem) -> list[Any]:
        if item.question_type not in rag_types:
            return []
        kept = gate(hits[item.id], cfg.retrieval.min_score)[0]
        return kept[:mc_cap] if item.question_type == MC and mc_cap is not None else kept

    return {i.id: usable(i) for i in items}


def _unique_items(groups: list[list[QAItem]]) -> list[QAItem]:
    seen: dict[str, QAItem] = {}
    for items in groups:
        for item in items:
            other = seen.setdefault(item.id, item)
            if other.question != item.question:
                raise InputError(f"item id {item.id!r} appears in train and dev with different questions; ids must be unique for the context cache")
    return list(seen.values())


def _eval_callbacks(plan_: Plan, dev_contexts: dict[str, list[Any]] | None, base: Path | None = None) -> list[Any]:
    """Generation eval answers through predict's code path; ``base`` is the merged base of stage2_init=merge."""
    if not plan_.cfg.train.eval_generate or not plan_.dev_items:
        return []
    from krqa.training.evalgen import GenerateEvalCallback

    cfg = plan_.cfg if base is None else plan_.cfg.model_copy(update={"model": plan_.cfg.model.model_copy(update={"base": str(base)})})
    return [GenerateEvalCallback(cfg, plan_.dev_items[: plan_.cfg.train.eval_generate_max_items], dev_contexts)]


def execute(plan_: Plan) -> dict[str, Any]:
    """Run the planned stages; returns a summary (paths, per-stage loss and time) for the CLI."""
    from accelerate import PartialState

    from krqa.generation.models import load_tokenizer
    from krqa.qa.prompts import PromptBuilder
    from krqa.training.plot import plot_loss_curve

    state = PartialState()
    cfg, run, tc = plan_.cfg, plan_.run, plan_.cfg.train
    if state.is_main_process:
        run.root.mkdir(parents=True, exist_ok=True)
        run.write_config(dump_config(cfg))
        run.record_start(_project_dir(cfg), cfg.model.base, str(plan_.base_path), plan_.data_hashes)
    state.wait_for_everyone()

    tokenizer = load_tokenizer(cfg.model)
    mc_target = mc_answer_style(cfg.generation)
    builder = PromptBuilder(cfg.prompt, tokenizer, mc_target=mc_target)
    alternatives = tc.short_answer_alternatives
    summary: dict[str, Any] = {"run_dir": str(run.root), "stages": {}}
    retrained = False

    if "stage1" in plan_.stages:
        train_ex = _stage_examples(plan_.train_sources + plan_.external_sources, alternatives, mc_target=mc_target)
        dev_ex = _stage_examples([SourceItem(i, "dev") for i in plan_.dev_items], "first", mc_target=mc_target)
        data = _encode(plan_, builder, tokenizer, train_ex, dev_ex)
        data.info["examples_by_source"] = examples_per_source(plan_.train_sources + plan_.external_sources, alternatives, mc_target)

        def init_stage1() -> Any:
            return lora.new_adapter(lora.load_base_for_training(cfg.model, tc, plan_.precision), tc.lora)

        record = _run_stage(plan_, "stage1", data, tokenizer, init_stage1, False, _eval_callbacks(plan_, None))
        retrained = not record.get("skipped")
        _finish_stage(run, "stage1", record, summary, state.is_main_process)

    if "stage2" in plan_.stages:
        stage2_sources = plan_.train_sources + (plan_.external_sources if tc.stage2_external else [])
        hits, cache_info = _retrieve(plan_, _unique_items([[s.item for s in stage2_sources], plan_.dev_items]))
        usable = _usable_hits(cfg, hits, [s.item for s in stage2_sources] + plan_.dev_items)
        mixed, decisions = mix_contexts([s.item.id for s in stage2_sources], [usable[s.item.id] for s in stage2_sources], tc.raft, tc.seed)
        contexts = {s.item.id: ctx for s, ctx in zip(stage2_sources, mixed)}
        dev_contexts = {i.id: usable[i.id][: cfg.retrieval.top_k] for i in plan_.dev_items}
        if state.is_main_process:
            atomic_write_json(run.root / "raft.json", {"seed": tc.seed, "config": tc.raft.model_dump(), "summary": summarize(decisions), "decisions": [d.to_json() for d in decisions]}, indent=None)
            run.update_json("run.json", {"contexts_cache": {k: v for k, v in cache_info.items() if k != "reused"}})
        train_ex = _stage_examples(stage2_sources, alternatives, contexts, mc_target)
        dev_ex = _stage_examples([SourceItem(i, "dev") for i in plan_.dev_items], "first", dev_contexts, mc_target)
        data = _encode(plan_, builder, tokenizer, train_ex, dev_ex)
        data.info["raft"] = summarize(decisions)
        data.info["contexts_cache"] = cache_info
        data.info["stage2_init"] = tc.stage2_init
        stage1_adapter = run.adapter("stage1")

        def init_stage2() -> Any:
            base = lora.load_base_for_training(cfg.model, tc, plan_.precision)
            if tc.stage2_init == "continue":
                return lora.continue_adapter(base, stage1_adapter)
            merged = lora.merge_adapter(base, stage1_adapter)
            if state.is_main_process:
                with atomic_dir(run.merged_base()) as tmp:
                    merged.save_pretrained(str(tmp))
                    tokenizer.save_pretrained(str(tmp))
            state.wait_for_everyone()
            merged.name_or_path = str(run.merged_base())
            merged.config._name_or_path = str(run.merged_base())
            return lora.new_adapter(merged, tc.lora)

        record = _run_stage(plan_, "stage2", data, tokenizer, init_stage2, retrained, _eval_callbacks(plan_, dev_contexts, run.merged_base() if tc.stage2_init == "merge" else None))
        if state.is_main_process and tc.stage2_init == "merge" and not record.get("skipped"):
            lora.set_adapter_base(run.adapter("stage2"), str(run.merged_base()))
            record["base_for_adapter"] = str(run.merged_base())
        _finish_stage(run, "stage2", record, summary, state.is_main_process)

    if state.is_main_process:
        plot = plot_loss_curve(run.metrics(), run.plot_path)
        summary["loss_curve"] = str(plot) if plot else None
        summary["metrics"] = str(run.metrics_path)
    return summary


def _finish_stage(run: RunDir, stage: str, record: dict[str, Any], summary: dict[str, Any], is_main: bool) -> None:
    if is_main and not record.get("skipped"):
        run.write_stage_metrics(stage, record)
    summary["stages"][stage] = stage_summary(record)


def stage_summary(record: dict[str, Any]) -> dict[str, Any]:
    """The few numbers a person reads about a stage, from its metrics.json record (fresh or from an earlier run)."""
    train = record.get("train_loss") or []
    return {
        "adapter": record.get("adapter"),
        "skipped": bool(record.get("skipped")),
        "steps": record.get("steps"),
        "first_train_loss": train[0]["loss"] if train else None,
        "last_train_loss": train[-1]["loss"] if train else None,
        "best_epoch": record.get("best_epoch"),
        "best_dev_loss": record.get("best_dev_loss"),
        "time_s": record.get("time_s"),
        **({"base_for_adapter": record["base_for_adapter"]} if "base_for_adapter" in record else {}),
    }


def train(cfg: KrqaConfig, rag: bool = False, stage: Stage = "all", resume: bool = False, config_path: str | None = None) -> dict[str, Any]:
    """Plan (all input checks), then run; the public entry point the CLI calls."""
    plan_ = plan(cfg, rag=rag, stage=stage, resume=resume, config_path=config_path)
    try:
        return execute(plan_)
    except KeyboardInterrupt:
        raise
    except (KrqaError, OSError, RuntimeError) as exc:
        if isinstance(exc, KrqaError):
            raise
        raise KrqaError(f"training failed in {plan_.run.root}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (re-run with --resume to continue from the last checkpoint)") from exc

"""The two SFT stages of the stage table, on the transformers ``Trainer`` with the loss on answer tokens only.

Stage 1 (task and knowledge SFT) trains a new LoRA adapter on the NIKL train set plus the configured external
sets, each item with its own passages (if any). Stage 2 (``--rag``) continues the stage-1 adapter (or merges it
and adds a new one) on the same NIKL questions with RAFT-mixed passages from the retriever ``predict`` uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from krqa.errors import InputError
from krqa.fsutil import atomic_dir, atomic_write_json, json_sha
from krqa.generation.spans import span_target
from krqa.index.types import Hit
from krqa.log import progress_disabled
from krqa.qa.data import SHORT, QAItem
from krqa.training import lora
from krqa.training.config import TrainConfig
from krqa.training.contexts import read_cache, retrieve_contexts, usable_hits
from krqa.training.data import PadCollator, TrainExample, count_tokens, encode_examples, pack
from krqa.training.converters import load_external
from krqa.training.external import SourceItem, examples_per_source, training_targets
from krqa.training.plan import Plan, check_index, unique_items
from krqa.training.raft import mix_contexts, summarize
from krqa.training.run import hash_path
from krqa.training.stage import StageContext, StageJob, StageSpec, shared_args


def first_per_type(items: list[QAItem], limit: int | None) -> list[QAItem]:
    """The first ``limit`` items of each question type, in file order (all when ``limit`` is None)."""
    if limit is None:
        return items
    seen: dict[str, int] = {}
    keep = []
    for item in items:
        seen[item.question_type] = seen.get(item.question_type, 0) + 1
        if seen[item.question_type] <= limit:
            keep.append(item)
    return keep


def stage_examples(sources: list[SourceItem], alternatives: str, contexts: dict[str, list[Hit]] | None = None,
                   mc_target: str = "number", sa_spans: bool = False) -> list[TrainExample]:
    """One example per training target; ``contexts`` (by item id) replaces the items' own passages. With
    ``sa_spans`` (단답형 answered by span extraction) a 단답형 item whose passages hold one of its answers is trained
    on that span as the passages write it (its one target), the form the extractor will pick at inference."""
    out = []
    for src in sources:
        targets = training_targets(src.item, alternatives, mc_target)
        passages: list[Any] = contexts[src.item.id] if contexts is not None else src.contexts
        if sa_spans and targets and src.item.question_type == SHORT and passages:
            span = span_target(targets, [c.text for c in passages])
            targets = [span] if span is not None else targets
        for k, target in enumerate(targets):
            ex_id = src.item.id if len(targets) == 1 else f"{src.item.id}#{k}"
            out.append(TrainExample(ex_id, src.item, target, list(passages)))
    return out


def dev_items(plan: Plan) -> list[QAItem]:
    """SFT evaluates on the first ``train.max_dev_items`` dev questions of each type (a forward pass per epoch)."""
    return first_per_type(plan.dev_items, plan.cfg.train.max_dev_items)


def external_sources(plan: Plan) -> list[SourceItem]:
    """The configured external sets, converted (once per plan; stage 1 and, with stage2_external, stage 2 use them)."""
    if "external" not in plan.inputs:
        tc = plan.cfg.train
        loaded: list[SourceItem] = []
        for ext in tc.external:
            path = Path(ext.path)
            loaded += load_external(ext, path, tc.seed, n_train=len(plan.train_sources))
            if path.exists():
                plan.data_hashes[f"external:{ext.kind}:{ext.path}"] = hash_path(path)
        plan.inputs["external"] = loaded
    return plan.inputs["external"]


@dataclass
class StageData:
    """Encoded train and dev examples of an SFT stage, and counts for its record."""

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


def encoded_sha(rows: list[dict[str, list[int]]]) -> str:
    """sha256 of encoded examples, hashed one row at a time (a whole set as one JSON string can take gigabytes)."""
    return json_sha([json_sha(row) for row in rows])


def training_args(plan: Plan, spec: StageSpec, has_dev: bool) -> Any:
    from transformers import TrainingArguments  # start-up time: transformers loads only when a stage trains

    tc = plan.cfg.train
    fields = TrainingArguments.__dataclass_fields__
    # transformers 5 spells length grouping train_sampling_strategy='group_by_length', 4.x group_by_length=True
    grouping = ({"train_sampling_strategy": "group_by_length" if tc.group_by_length else "random"} if "train_sampling_strategy" in fields
                else {"group_by_length": tc.group_by_length})
    return TrainingArguments(
        **shared_args(plan, spec, "eval_loss" if has_dev else None, False if has_dev else None),
        per_device_train_batch_size=tc.batch_size,
        prediction_loss_only=True,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        **grouping,
    )


def sft_job(ctx: StageContext, spec: StageSpec, data: StageData, init_model: Any, callbacks: list[Any], upstream: Path | None = None,
            base: Path | None = None) -> StageJob:
    """The runner's job for an SFT stage: its fingerprint is the encoded data itself (token ids of prompts and
    targets), so any change of the training file, passages, prompt settings or tokenizer retrains it."""
    from krqa.training.loss import AnswerLossTrainer  # start-up time: it subclasses transformers' Trainer

    tokenizer = ctx.tokenizer
    has_dev = bool(data.dev)

    def make_trainer(all_callbacks: list[Any]) -> Any:
        return AnswerLossTrainer(
            model=init_model(),
            args=training_args(ctx.plan, spec, has_dev),
            train_dataset=data.train,
            eval_dataset=data.dev or None,
            data_collator=PadCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id, 8),
            processing_class=tokenizer,
            callbacks=all_callbacks,
        )

    return StageJob(fingerprint={"train": encoded_sha(data.train), "dev": encoded_sha(data.dev)}, make_trainer=make_trainer, has_dev=has_dev,
                    callbacks=callbacks, upstream=upstream, base=base, info=data.info)


def check_stage1(plan: Plan) -> None:
    tc = plan.cfg.train
    sources = plan.train_sources + external_sources(plan)
    if not stage_examples(sources, tc.short_answer_alternatives):
        raise InputError(
            f"{tc.train_file}: no training examples after filtering ({len(plan.train_sources)} items, "
            f"{len(sources) - len(plan.train_sources)} from external sets, none with a usable answer)"
        )


def check_stage2(plan: Plan) -> None:
    tc, run = plan.cfg.train, plan.run
    if not stage_examples(plan.train_sources, tc.short_answer_alternatives):
        raise InputError(f"{tc.train_file}: no stage-2 training examples after filtering ({len(plan.train_sources)} items, none with a usable answer)")
    check_index(plan, "stage 2 / --rag trains on retrieved contexts")
    if tc.stage2_init == "merge" and tc.qlora:
        raise InputError("train.stage2_init=merge cannot merge into a 4-bit QLoRA base; use stage2_init=continue")
    if "stage1" not in plan.stages and not (run.adapter("stage1") / "adapter_config.json").is_file():
        raise InputError(f"{run.adapter('stage1')}: stage-1 adapter not found; run stage 1 first (krqa train --stage 1) or use --stage all")
    if tc.stage2_external:
        external_sources(plan)


def prepare_stage1(ctx: StageContext, spec: StageSpec) -> StageJob:
    """Task and knowledge SFT on the train set and the external sets, each item with its own passages (if any)."""
    plan, tc = ctx.plan, ctx.plan.cfg.train
    sources = plan.train_sources + external_sources(plan)
    train_ex = stage_examples(sources, tc.short_answer_alternatives, mc_target=ctx.mc_target)
    dev_ex = stage_examples([SourceItem(i, "dev") for i in dev_items(plan)], "first", mc_target=ctx.mc_target)
    data = encode_stage(tc, ctx.builder, ctx.tokenizer, train_ex, dev_ex)
    data.info["examples_by_source"] = examples_per_source(sources, tc.short_answer_alternatives, ctx.mc_target)

    def init_model() -> Any:
        return lora.new_adapter(lora.load_base_for_training(plan.cfg.model, tc, plan.precision), tc.lora)

    return sft_job(ctx, spec, data, init_model, eval_callbacks(plan, None))


def prepare_stage2(ctx: StageContext, spec: StageSpec) -> StageJob:
    """SFT on retrieved passages as predict will show them, RAFT-mixed with distractors, starting from stage 1."""
    from accelerate import PartialState  # start-up time: accelerate loads only when a stage trains

    plan, cfg, run, tc = ctx.plan, ctx.plan.cfg, ctx.plan.run, ctx.plan.cfg.train
    sources = plan.train_sources + (external_sources(plan) if tc.stage2_external else [])
    dev = dev_items(plan)
    hits, cache_info = _retrieve(plan, unique_items([s.item for s in sources], dev))
    usable = usable_hits(cfg, hits, [s.item for s in sources] + dev)
    mixed, decisions = mix_contexts([s.item.id for s in sources], [usable[s.item.id] for s in sources], tc.raft, tc.seed)
    contexts = {s.item.id: c for s, c in zip(sources, mixed)}
    dev_contexts = {i.id: usable[i.id][: cfg.retrieval.top_k] for i in dev}
    if ctx.is_main:
        atomic_write_json(run.root / "raft.json", {"seed": tc.seed, "config": tc.raft.model_dump(), "summary": summarize(decisions),
                                                   "decisions": [d.to_json() for d in decisions]}, indent=None)
        run.update_json("run.json", {"contexts_cache": {k: v for k, v in cache_info.items() if k != "reused"}})
    spans = cfg.generation.sa_mode != "generate"
    train_ex = stage_examples(sources, tc.short_answer_alternatives, contexts, ctx.mc_target, sa_spans=spans)
    dev_ex = stage_examples([SourceItem(i, "dev") for i in dev], "first", dev_contexts, ctx.mc_target, sa_spans=spans)
    data = encode_stage(tc, ctx.builder, ctx.tokenizer, train_ex, dev_ex)
    data.info.update(raft=summarize(decisions), contexts_cache=cache_info, stage2_init=tc.stage2_init)
    merge = tc.stage2_init == "merge"

    def init_model() -> Any:
        base = lora.load_base_for_training(cfg.model, tc, plan.precision)
        if not merge:
            return lora.continue_adapter(base, run.adapter("stage1"))
        merged = lora.merge_adapter(base, run.adapter("stage1"))
        if ctx.is_main:
            with atomic_dir(run.merged_base()) as tmp:
                merged.save_pretrained(str(tmp))
                ctx.tokenizer.save_pretrained(str(tmp))
        PartialState().wait_for_everyone()
        merged.name_or_path = merged.config._name_or_path = str(run.merged_base())
        return lora.new_adapter(merged, tc.lora)

    callbacks = eval_callbacks(plan, dev_contexts, run.merged_base() if merge else None)
    job = sft_job(ctx, spec, data, init_model, callbacks, upstream=run.adapter("stage1"), base=run.merged_base() if merge else None)
    job.fingerprint["stage2_init"] = tc.stage2_init
    return job


def _retrieve(plan: Plan, items: list[QAItem]) -> tuple[dict[str, list[Hit]], dict[str, Any]]:
    """Main process retrieves (or reuses the cache); the others read the cache it wrote."""
    from accelerate import PartialState  # start-up time: as above

    state = PartialState()
    top_k = max(plan.cfg.train.raft.max_contexts, plan.cfg.retrieval.top_k)
    result: tuple[dict[str, list[Hit]], dict[str, Any]] | None = None
    if state.is_main_process:
        result = retrieve_contexts(plan.cfg, items, plan.run.contexts_path, top_k)
    state.wait_for_everyone()
    return result if result is not None else read_cache(plan.run.contexts_path)


def eval_callbacks(plan: Plan, dev_contexts: dict[str, list[Hit]] | None, base: Path | None = None) -> list[Any]:
    """Generation eval answers through predict's code path; ``base`` is the merged base of stage2_init=merge."""
    if not plan.cfg.train.eval_generate or not plan.dev_items:
        return []
    from krqa.training.answer_eval import GenerateEvalCallback  # start-up time: it subclasses transformers' TrainerCallback

    cfg = plan.cfg if base is None else plan.cfg.model_copy(update={"model": plan.cfg.model.model_copy(update={"base": str(base)})})
    return [GenerateEvalCallback(cfg, dev_items(plan)[: plan.cfg.train.eval_generate_max_items], dev_contexts)]

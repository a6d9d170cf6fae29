"""``krqa train``, read top to bottom: plan, start the run's records, stage 1, stage 2, finish the records.

Stage 1 (task and knowledge SFT) trains a LoRA adapter on the NIKL train set plus configured external sets,
without retrieved contexts. Stage 2 (``--rag``) starts from the stage-1 adapter and trains on the same NIKL
questions with RAFT-mixed contexts from the retriever ``predict`` uses. Each stage is a function of the
:class:`~krqa.training.plan.Plan` and what the stages before it left in the run directory; :data:`STAGES` maps
a stage name to it, so a new stage is one more function and one more entry. The Trainer mechanics shared by
every stage are in :mod:`krqa.training.stage`; input checks, run before any model loads, in
:mod:`krqa.training.plan`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from krqa.config import KrqaConfig, dump_config
from krqa.errors import InputError, KrqaError
from krqa.fsutil import atomic_dir, atomic_write_json
from krqa.generation.config import mc_answer_style
from krqa.index.types import Hit
from krqa.qa.data import MC, QAItem
from krqa.training import lora
from krqa.training.external import SourceItem, examples_per_source
from krqa.training.plan import Plan, Stage, make_plan, stage_examples
from krqa.training.raft import mix_contexts, summarize
from krqa.training.run import RunDir
from krqa.training.stage import encode_stage, run_stage

log = logging.getLogger(__name__)


def train(cfg: KrqaConfig, rag: bool = False, stage: Stage = "all", resume: bool = False, config_path: str | None = None) -> dict[str, Any]:
    """Plan (all input checks), then run the planned stages; the entry point the CLI calls."""
    plan = make_plan(cfg, rag=rag, stage=stage, resume=resume, config_path=config_path)
    try:
        return execute(plan)
    except KeyboardInterrupt:
        raise
    except (KrqaError, OSError, RuntimeError) as exc:
        if isinstance(exc, KrqaError):
            raise
        raise KrqaError(f"training failed in {plan.run.root}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (re-run with --resume to continue from the last checkpoint)") from exc


@dataclass
class Context:
    """What every stage shares: the plan, the tokenizer and prompt builder, and whether an earlier stage of this
    invocation trained afresh (then a later stage cannot resume its own old checkpoints)."""

    plan: Plan
    tokenizer: Any
    builder: Any
    mc_target: str
    is_main: bool
    upstream_retrained: bool = False


def execute(plan: Plan) -> dict[str, Any]:
    """Run the planned stages in order; returns a summary (paths, per-stage loss and time) for the CLI."""
    from accelerate import PartialState

    from krqa.generation.lm import load_tokenizer
    from krqa.qa.prompts import PromptBuilder

    state = PartialState()
    cfg, run = plan.cfg, plan.run
    if state.is_main_process:
        start_records(plan)
    state.wait_for_everyone()

    tokenizer = load_tokenizer(cfg.model)
    mc_target = mc_answer_style(cfg.generation)
    ctx = Context(plan, tokenizer, PromptBuilder(cfg.prompt, tokenizer, mc_target=mc_target), mc_target, state.is_main_process)
    summary: dict[str, Any] = {"run_dir": str(run.root), "stages": {}}
    for name in plan.stages:
        record = STAGES[name](ctx)
        ctx.upstream_retrained = ctx.upstream_retrained or not record.get("skipped")
        if ctx.is_main and not record.get("skipped"):
            run.write_stage_metrics(name, record)
        summary["stages"][name] = stage_summary(record)
    if ctx.is_main:
        summary.update(finish_records(run))
    return summary


def start_records(plan: Plan) -> None:
    """The resolved config and where the run came from (code, base model, data hashes), before any training."""
    plan.run.root.mkdir(parents=True, exist_ok=True)
    plan.run.write_config(dump_config(plan.cfg))
    plan.run.record_start(Path(plan.cfg.base_dir).resolve(), plan.cfg.model.base, str(plan.base_path), plan.data_hashes)


def stage1(ctx: Context) -> dict[str, Any]:
    """Task and knowledge SFT on the train set and the external sets, each item with its own passages (if any)."""
    plan, tc = ctx.plan, ctx.plan.cfg.train
    train_ex = stage_examples(plan.train_sources + plan.external_sources, tc.short_answer_alternatives, mc_target=ctx.mc_target)
    dev_ex = stage_examples([SourceItem(i, "dev") for i in plan.dev_items], "first", mc_target=ctx.mc_target)
    data = encode_stage(tc, ctx.builder, ctx.tokenizer, train_ex, dev_ex)
    data.info["examples_by_source"] = examples_per_source(plan.train_sources + plan.external_sources, tc.short_answer_alternatives, ctx.mc_target)

    def init_model() -> Any:
        return lora.new_adapter(lora.load_base_for_training(plan.cfg.model, tc, plan.precision), tc.lora)

    return run_stage(plan, "stage1", data, ctx.tokenizer, init_model, False, _eval_callbacks(plan, None))


def stage2(ctx: Context) -> dict[str, Any]:
    """SFT on retrieved passages as predict will show them, RAFT-mixed with distractors, starting from stage 1."""
    from accelerate import PartialState

    plan, cfg, run, tc = ctx.plan, ctx.plan.cfg, ctx.plan.run, ctx.plan.cfg.train
    sources = plan.train_sources + (plan.external_sources if tc.stage2_external else [])
    hits, cache_info = _retrieve(plan, _unique_items([[s.item for s in sources], plan.dev_items]))
    usable = usable_hits(cfg, hits, [s.item for s in sources] + plan.dev_items)
    mixed, decisions = mix_contexts([s.item.id for s in sources], [usable[s.item.id] for s in sources], tc.raft, tc.seed)
    contexts = {s.item.id: c for s, c in zip(sources, mixed)}
    dev_contexts = {i.id: usable[i.id][: cfg.retrieval.top_k] for i in plan.dev_items}
    if ctx.is_main:
        atomic_write_json(run.root / "raft.json", {"seed": tc.seed, "config": tc.raft.model_dump(), "summary": summarize(decisions),
                                                   "decisions": [d.to_json() for d in decisions]}, indent=None)
        run.update_json("run.json", {"contexts_cache": {k: v for k, v in cache_info.items() if k != "reused"}})
    spans = cfg.generation.sa_mode != "generate"
    train_ex = stage_examples(sources, tc.short_answer_alternatives, contexts, ctx.mc_target, sa_spans=spans)
    dev_ex = stage_examples([SourceItem(i, "dev") for i in plan.dev_items], "first", dev_contexts, ctx.mc_target, sa_spans=spans)
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

    callbacks = _eval_callbacks(plan, dev_contexts, run.merged_base() if merge else None)
    record = run_stage(plan, "stage2", data, ctx.tokenizer, init_model, ctx.upstream_retrained, callbacks)
    if ctx.is_main and merge and not record.get("skipped"):
        lora.set_adapter_base(run.adapter("stage2"), str(run.merged_base()))
        record["base_for_adapter"] = str(run.merged_base())
    return record


# Stage name -> the function that trains it; runs in the order the plan lists them.
STAGES: dict[str, Callable[[Context], dict[str, Any]]] = {"stage1": stage1, "stage2": stage2}


def finish_records(run: RunDir) -> dict[str, Any]:
    """The loss curve of every stage trained so far in this run directory, and where the metrics are."""
    from krqa.training.plot import plot_loss_curve

    plot = plot_loss_curve(run.metrics(), run.plot_path)
    return {"loss_curve": str(plot) if plot else None, "metrics": str(run.metrics_path)}


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


def _retrieve(plan: Plan, items: list[QAItem]) -> tuple[dict[str, list[Hit]], dict[str, Any]]:
    """Main process retrieves (or reuses the cache); the others read the cache it wrote."""
    from accelerate import PartialState

    from krqa.training.contexts import read_cache, retrieve_contexts

    state = PartialState()
    top_k = max(plan.cfg.train.raft.max_contexts, plan.cfg.retrieval.top_k)
    result: tuple[dict[str, list[Hit]], dict[str, Any]] | None = None
    if state.is_main_process:
        result = retrieve_contexts(plan.cfg, items, plan.run.contexts_path, top_k)
    state.wait_for_everyone()
    return result if result is not None else read_cache(plan.run.contexts_path)


def usable_hits(cfg: KrqaConfig, hits: dict[str, list[Hit]], items: list[QAItem]) -> dict[str, list[Hit]]:
    """What predict would put in each prompt: nothing for types outside ``predict.rag_types``, only passages at or
    above ``retrieval.min_score``, and for 선다형 option scoring at most ``generation.mc_max_passages``."""
    from krqa.generation.answerer import gate

    rag_types = set(cfg.predict.rag_types)
    mc_cap = cfg.generation.mc_max_passages if cfg.generation.mc_mode == "score" else None

    def usable(item: QAItem) -> list[Hit]:
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


def _eval_callbacks(plan: Plan, dev_contexts: dict[str, list[Hit]] | None, base: Path | None = None) -> list[Any]:
    """Generation eval answers through predict's code path; ``base`` is the merged base of stage2_init=merge."""
    if not plan.cfg.train.eval_generate or not plan.dev_items:
        return []
    from krqa.training.answer_eval import GenerateEvalCallback

    cfg = plan.cfg if base is None else plan.cfg.model_copy(update={"model": plan.cfg.model.model_copy(update={"base": str(base)})})
    return [GenerateEvalCallback(cfg, plan.dev_items[: plan.cfg.train.eval_generate_max_items], dev_contexts)]

"""Checks and inputs shared by the stages after SFT (``krqa train --stage dpo|grpo``).

Both stages continue an adapter already in the run directory, answer the train questions with the prompts
``predict`` would build (retrieved passages included when the run uses RAG), and choose their best adapter on the
dev set. Every check that can fail on bad input runs in :func:`check_rl`, before a model is loaded or a file is
written, so a bad invocation costs seconds and leaves the run directory as it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from krqa.config import KrqaConfig
from krqa.errors import InputError
from krqa.index.types import Hit
from krqa.qa.data import QAItem
from krqa.training import lora
from krqa.training.contexts import retrieve_contexts, usable_hits
from krqa.training.plan import Plan, check_adapter_base, check_index, unique_items
from krqa.training.run import RunDir

log = logging.getLogger(__name__)


@dataclass
class RlPlan:
    """A checked DPO/GRPO stage: which adapter it starts from, on which base, with which questions."""

    cfg: KrqaConfig
    stage: str
    run: RunDir
    rag: bool
    precision: str
    base_path: Path
    init_adapter: Path
    train_items: list[QAItem]
    dev_items: list[QAItem]

    @property
    def stage_cfg(self) -> Any:
        return getattr(self.cfg.train, self.stage)


def _init_adapter(run: RunDir, init: str, stage: str) -> Path:
    """'auto' continues the furthest SFT stage the run has: stage 2 (retrieval-grounded) over stage 1."""
    order = ["stage2", "stage1"] if init == "auto" else [init]
    for name in order:
        if (run.adapter(name) / "adapter_config.json").is_file():
            return run.adapter(name)
    wanted = " or ".join(str(run.adapter(n)) for n in order)
    raise InputError(f"{wanted}: no SFT adapter to start {stage} from; train first (krqa train [--rag]) or set train.{stage}.init")


def check_rl(plan: Plan, stage: str) -> None:
    """The checks of a stage after SFT, before any model loads; the checked inputs go to ``plan.inputs[stage]``."""
    tc, run = plan.cfg.train, plan.run
    if not tc.dev_file:
        raise InputError(f"train.dev_file: a {stage} run needs a dev set (its best adapter and early stopping are chosen on dev); set train.dev_file")
    train_items = [s.item for s in plan.train_sources]
    if not train_items:
        raise InputError(f"{tc.train_file}: no training questions for {stage}")
    if not plan.dev_items:
        raise InputError(f"{tc.dev_file}: the dev set is empty; a {stage} run chooses its adapter on dev")
    init_adapter = _init_adapter(run, getattr(tc, stage).init, stage)
    check_adapter_base(init_adapter, plan)
    base_path, merged = plan.base_path, run.merged_base()
    if lora.adapter_base(init_adapter) in (str(merged), str(merged.resolve())):
        if not (merged / "config.json").is_file():
            raise InputError(f"{merged}: {init_adapter} was trained on this merged base, which is missing; retrain stage 2")
        base_path = merged
    if plan.rag:
        check_index(plan, "--rag puts retrieved passages in the prompts")
    unique_items(train_items, plan.dev_items)
    plan.inputs[stage] = RlPlan(plan.cfg, stage, run, plan.rag, plan.precision, base_path, init_adapter, train_items, plan.dev_items)


def inference_contexts(plan: RlPlan) -> dict[str, list[Hit]]:
    """The passages ``predict`` would show for each train/dev question (empty without --rag).

    Retrieval goes through the stage-2 context cache (same items, same depth), so a run that trained stage 2
    retrieves nothing again; the passages are then gated as predict gates them: only ``predict.rag_types``, only
    at or above ``retrieval.min_score``, at most ``generation.mc_max_passages`` for scored 선다형, top ``retrieval.top_k``.
    """
    items = unique_items(plan.train_items, plan.dev_items)
    if not plan.rag:
        return {i.id: [] for i in items}
    cfg = plan.cfg
    top_k = max(cfg.train.raft.max_contexts, cfg.retrieval.top_k)
    hits, _ = retrieve_contexts(cfg, items, plan.run.contexts_path, top_k)
    usable = usable_hits(cfg, hits, items)
    return {item.id: usable[item.id][: cfg.retrieval.top_k] for item in items}


def load_policy(plan: RlPlan) -> Any:
    """The base in the training dtype with the starting adapter, trainable; TRL copies it as the frozen reference."""
    base = lora.load_base_for_training(plan.cfg.model, plan.cfg.train, plan.precision, base_path=plan.base_path)
    return lora.continue_adapter(base, plan.init_adapter)


def config_on_base(plan: RlPlan) -> KrqaConfig:
    """The root config with ``model.base`` set to the base the starting adapter belongs to (the merged base of a
    stage2_init=merge adapter), for the sampler that answers with that adapter."""
    if plan.base_path != plan.run.merged_base():
        return plan.cfg
    return plan.cfg.model_copy(update={"model": plan.cfg.model.model_copy(update={"base": str(plan.base_path)})})

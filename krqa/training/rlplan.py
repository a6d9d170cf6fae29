"""Checks and inputs shared by the stages after SFT (``krqa train --stage dpo|grpo``).

Both stages continue an adapter already in the run directory, answer the train questions with the prompts
``predict`` would build (retrieved passages included when the run uses RAG), and choose their best adapter on the
dev set. Every check that can fail on bad input runs in :func:`plan_rl`, before a model is loaded or a file is
written, so a bad invocation costs seconds and leaves the run directory as it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from krqa.errors import InputError
from krqa.index.types import Hit
from krqa.qa.data import QAItem
from krqa.training import lora
from krqa.training.external import load_nikl
from krqa.training.run import RunDir, hash_path

if TYPE_CHECKING:
    from krqa.config import KrqaConfig

log = logging.getLogger(__name__)

RL_STAGES = ("dpo", "grpo")


@dataclass
class RlPlan:
    """A validated DPO/GRPO invocation: which adapter it starts from, on which base, with which questions."""

    cfg: KrqaConfig
    stage: str
    run: RunDir
    rag: bool
    resume: bool
    precision: str
    base_path: Path
    init_adapter: Path
    train_items: list[QAItem]
    dev_items: list[QAItem]
    data_hashes: dict[str, str]

    @property
    def stage_cfg(self) -> Any:
        return self.cfg.train.dpo if self.stage == "dpo" else self.cfg.train.grpo


def sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _init_adapter(run: RunDir, init: str, stage: str) -> Path:
    """'auto' continues the furthest SFT stage the run has: stage 2 (retrieval-grounded) over stage 1."""
    order = ["stage2", "stage1"] if init == "auto" else [init]
    for name in order:
        if (run.adapter(name) / "adapter_config.json").is_file():
            return run.adapter(name)
    wanted = " or ".join(str(run.adapter(n)) for n in order)
    raise InputError(f"{wanted}: no SFT adapter to start {stage} from; train first (krqa train [--rag]) or set train.{stage}.init")


def _adapter_base(adapter: Path, allowed: set[str], base_name: str, base_path: Path) -> None:
    recorded = lora.adapter_base(adapter)
    if recorded is not None and recorded not in allowed:
        raise InputError(
            f"{adapter / 'adapter_config.json'}: adapter belongs to base model {recorded!r}, not to model.base={base_name!r} ({base_path}); "
            "use the run's config or another --output"
        )


def plan_rl(cfg: KrqaConfig, stage: str, rag: bool = False, resume: bool = False, config_path: str | None = None) -> RlPlan:
    """Validate a DPO/GRPO invocation; raises InputError with a one-line reason on bad input."""
    from krqa.generation.lm import resolve_base_model

    tc = cfg.train
    if stage not in RL_STAGES:
        raise InputError(f"--stage: {stage!r} is not one of {', '.join(RL_STAGES)}")
    if not tc.dev_file:
        raise InputError(f"train.dev_file: a {stage} run needs a dev set (its best adapter and early stopping are chosen on dev); set train.dev_file")
    precision = lora.resolve_precision(tc.precision)
    lora.check_qlora(tc)
    run = RunDir(Path(tc.output_dir).resolve())
    base_path = Path(resolve_base_model(cfg.model))
    train_file, dev_file = Path(tc.train_file), Path(tc.dev_file)
    train_items = [s.item for s in load_nikl(train_file, source="train")]
    dev_items = [s.item for s in load_nikl(dev_file, source="dev")]
    if not train_items:
        raise InputError(f"{train_file}: no training questions for {stage}")
    if not dev_items:
        raise InputError(f"{dev_file}: the dev set is empty; a {stage} run chooses its adapter on dev")
    init_cfg = tc.dpo.init if stage == "dpo" else tc.grpo.init
    init_adapter = _init_adapter(run, init_cfg, stage)
    merged = run.merged_base()
    allowed = {cfg.model.base, str(base_path), str(base_path.resolve()), str(merged), str(merged.resolve())}
    _adapter_base(init_adapter, allowed, cfg.model.base, base_path)
    if lora.adapter_base(init_adapter) in (str(merged), str(merged.resolve())):
        if not (merged / "config.json").is_file():
            raise InputError(f"{merged}: {init_adapter} was trained on this merged base, which is missing; retrain stage 2")
        base_path = merged
    if resume:
        previous = run.read_json("run.json")
        if previous.get("base_model") and previous["base_model"] != cfg.model.base:
            raise InputError(f"{run.root / 'run.json'}: run was trained on base model {previous['base_model']!r}, config has model.base={cfg.model.base!r}")
        ckpt = run.latest_checkpoint(stage)
        if ckpt is not None:
            _adapter_base(ckpt, allowed, cfg.model.base, base_path)
    if rag:
        index_dir = Path(cfg.index.dir)
        if not index_dir.is_dir() or not any(index_dir.iterdir()):
            raise InputError(f"{index_dir}: index not found (--rag puts retrieved passages in the prompts); "
                             f"build it first: krqa build-index --config {config_path or '<your config>'}")
    train_questions = {i.id: i.question for i in train_items}
    bad = sorted(i.id for i in dev_items if train_questions.get(i.id, i.question) != i.question)
    if bad:
        raise InputError(f"item id {bad[0]!r} appears in train and dev with different questions; ids must be unique")
    hashes = {f"train_file:{tc.train_file}": hash_path(train_file), f"dev_file:{tc.dev_file}": hash_path(dev_file), "init_adapter": hash_path(init_adapter)}
    return RlPlan(cfg, stage, run, rag, resume, precision, base_path, init_adapter, train_items, dev_items, hashes)


def inference_contexts(plan: RlPlan) -> dict[str, list[Hit]]:
    """The passages ``predict`` would show for each train/dev question (empty without --rag).

    Retrieval goes through the stage-2 context cache (same items, same depth), so a run that trained stage 2
    retrieves nothing again; the passages are then gated as predict gates them: only ``predict.rag_types``, only
    at or above ``retrieval.min_score``, at most ``generation.mc_max_passages`` for scored 선다형, top ``retrieval.top_k``.
    """
    items = _unique(plan.train_items, plan.dev_items)
    if not plan.rag:
        return {i.id: [] for i in items}
    from krqa.training.contexts import retrieve_contexts
    from krqa.training.trainer import usable_hits

    cfg = plan.cfg
    top_k = max(cfg.train.raft.max_contexts, cfg.retrieval.top_k)
    hits, _ = retrieve_contexts(cfg, items, plan.run.contexts_path, top_k)
    usable = usable_hits(cfg, hits, items)
    return {item.id: usable[item.id][: cfg.retrieval.top_k] for item in items}


def _unique(*groups: list[QAItem]) -> list[QAItem]:
    seen: dict[str, QAItem] = {}
    for items in groups:
        for item in items:
            seen.setdefault(item.id, item)
    return list(seen.values())


def load_policy(plan: RlPlan) -> Any:
    """The base in the training dtype with the starting adapter, trainable; TRL copies it as the frozen reference."""
    base = lora.load_base_for_training(plan.cfg.model, plan.cfg.train, plan.precision, base_path=plan.base_path)
    return lora.continue_adapter(base, plan.init_adapter)


def generation_config(plan: RlPlan) -> KrqaConfig:
    """The config a sampler loads: model.base, or the merged base that a stage2_init=merge adapter belongs to."""
    if plan.base_path != plan.run.merged_base():
        return plan.cfg
    return plan.cfg.model_copy(update={"model": plan.cfg.model.model_copy(update={"base": str(plan.base_path)})})

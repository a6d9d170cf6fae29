"""Step 0 of ``krqa train``: every check that can fail on bad input, before a model is loaded.

Empty data, a missing index, an unknown base model, an adapter of another base, QLoRA without a GPU: each is found
here or in the stage's own ``check`` (see :mod:`krqa.training.stages`), so a bad invocation costs seconds and
writes nothing. The checks every stage shares are here; what only one stage needs is in its table row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from krqa.config import KrqaConfig
from krqa.errors import InputError
from krqa.model_location import resolve_lm
from krqa.qa.data import QAItem
from krqa.training import lora
from krqa.training.external import SourceItem, load_nikl
from krqa.training.run import RunDir, hash_path


@dataclass
class Plan:
    """Everything validated before training: data, paths, base model and which stages to run how.

    ``dev_items`` is the whole dev set; a stage that evaluates on part of it takes its part. ``inputs`` holds
    what a stage's check loaded for it (the external sets of stage 1, the starting adapter of DPO), by stage name.
    """

    cfg: KrqaConfig
    run: RunDir
    stages: list[str]
    resume: bool
    rag: bool
    precision: str
    base_path: Path
    train_sources: list[SourceItem]
    dev_items: list[QAItem]
    data_hashes: dict[str, str]
    config_path: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)


def check_index(plan: Plan, why: str) -> None:
    """Stages that put retrieved passages in their prompts need the index before anything is trained."""
    index_dir = Path(plan.cfg.index.dir)
    if not index_dir.is_dir() or not any(index_dir.iterdir()):
        raise InputError(f"{index_dir}: index not found ({why}); build it first: krqa build-index --config {plan.config_path or '<your config>'}")


def unique_items(*groups: list[QAItem]) -> list[QAItem]:
    """The items of all groups once each, in order; one id with two different questions is an error (the context
    and sample caches are keyed by id)."""
    seen: dict[str, QAItem] = {}
    for items in groups:
        for item in items:
            other = seen.setdefault(item.id, item)
            if other.question != item.question:
                raise InputError(f"item id {item.id!r} appears in train and dev with different questions; ids must be unique")
    return list(seen.values())


def allowed_bases(plan: Plan) -> set[str]:
    """The base names an adapter of this run may record: the configured one, its directory, the merged base."""
    run, base_path = plan.run, plan.base_path
    allowed = {plan.cfg.model.base, str(base_path), str(base_path.resolve()), str(run.merged_base()), str(run.merged_base().resolve())}
    previous = run.read_json("run.json").get("base_model_path")
    if previous:
        allowed.add(previous)
    return allowed


def check_adapter_base(adapter: Path, plan: Plan) -> None:
    """An adapter only fits the base model it was trained on; continuing or resuming it on another must stop here."""
    recorded = lora.adapter_base(adapter)
    if recorded is not None and recorded not in allowed_bases(plan):
        raise InputError(
            f"{adapter / 'adapter_config.json'}: adapter belongs to base model {recorded!r}, not to model.base={plan.cfg.model.base!r} "
            f"({plan.base_path}); resume with the matching config or use another --output"
        )


def _check_resume_bases(plan: Plan) -> None:
    cfg, run = plan.cfg, plan.run
    previous = run.read_json("run.json")
    if previous.get("base_model") and previous["base_model"] != cfg.model.base:
        raise InputError(
            f"{run.root / 'run.json'}: run was trained on base model {previous['base_model']!r}, config has model.base={cfg.model.base!r}; "
            "resume with the run's config or use another --output"
        )
    for stage in plan.stages:
        for adapter_dir in (run.latest_checkpoint(stage), run.adapter(stage)):
            if adapter_dir is not None:
                check_adapter_base(adapter_dir, plan)


def make_plan(cfg: KrqaConfig, stages: list[str], rag: bool = False, resume: bool = False, config_path: str | None = None) -> Plan:
    """The checks every stage shares, and the NIKL train/dev data; raises InputError with a one-line reason."""
    tc = cfg.train
    run = RunDir(Path(tc.output_dir).resolve())
    precision = lora.resolve_precision(tc.precision)
    lora.check_qlora(tc)
    base_path = resolve_lm(cfg.model.base, cfg.model.cache_dir)
    train_file = Path(tc.train_file)
    train_sources = load_nikl(train_file, source="train")
    hashes = {f"train_file:{tc.train_file}": hash_path(train_file)}
    dev_items: list[QAItem] = []
    if tc.dev_file:
        dev_items = [s.item for s in load_nikl(Path(tc.dev_file), source="dev")]
        hashes[f"dev_file:{tc.dev_file}"] = hash_path(Path(tc.dev_file))
    plan = Plan(cfg=cfg, run=run, stages=stages, resume=resume, rag=rag, precision=precision, base_path=base_path,
                train_sources=train_sources, dev_items=dev_items, data_hashes=hashes, config_path=config_path)
    if resume:
        _check_resume_bases(plan)
    return plan

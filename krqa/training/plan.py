"""Step 0 of ``krqa train``: every check that can fail on bad input, before a model is loaded.

Empty data, a missing index, an unknown base model, an adapter of another base, QLoRA without a GPU: each is found
here, so a bad invocation costs seconds and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from krqa.config import KrqaConfig
from krqa.errors import InputError
from krqa.index.types import Hit
from krqa.qa.data import SHORT, QAItem
from krqa.training import lora
from krqa.training.data import TrainExample
from krqa.training.external import SourceItem, load_external, load_nikl, training_targets
from krqa.training.run import RunDir, hash_path

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
    from krqa.generation.spans import span_target

    out = []
    for src in sources:
        targets = training_targets(src.item, alternatives, mc_target)
        ctx: list[Any] = contexts[src.item.id] if contexts is not None else src.contexts
        if sa_spans and targets and src.item.question_type == SHORT and ctx:
            span = span_target(targets, [c.text for c in ctx])
            targets = [span] if span is not None else targets
        for k, target in enumerate(targets):
            ex_id = src.item.id if len(targets) == 1 else f"{src.item.id}#{k}"
            out.append(TrainExample(ex_id, src.item, target, list(ctx)))
    return out


def _check_index(index_dir: Path, config_path: str | None) -> None:
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


def make_plan(cfg: KrqaConfig, rag: bool = False, stage: Stage = "all", resume: bool = False, config_path: str | None = None) -> Plan:
    """Validate the invocation and load the data; raises InputError with a one-line reason on bad input."""
    from krqa.generation.lm import resolve_base_model

    tc = cfg.train
    if stage not in ("1", "2", "all"):
        raise InputError(f"--stage: {stage!r} is not one of 1, 2, all")
    stages = ["stage1"] if stage == "1" else ["stage2"] if stage == "2" else (["stage1", "stage2"] if rag else ["stage1"])
    run = RunDir(Path(tc.output_dir).resolve())
    precision = lora.resolve_precision(tc.precision)
    lora.check_qlora(tc)
    base_path = Path(resolve_base_model(cfg.model))

    train_file = Path(tc.train_file)
    train_sources = load_nikl(train_file, source="train")
    external_sources: list[SourceItem] = []
    hashes = {f"train_file:{tc.train_file}": hash_path(train_file)}
    for ext in tc.external:
        path = Path(ext.path)
        external_sources += load_external(ext, path, tc.seed, n_train=len(train_sources))
        if path.exists():
            hashes[f"external:{ext.kind}:{ext.path}"] = hash_path(path)
    dev_items: list[QAItem] = []
    if tc.dev_file:
        dev_items = first_per_type([s.item for s in load_nikl(Path(tc.dev_file), source="dev")], tc.max_dev_items)
        hashes[f"dev_file:{tc.dev_file}"] = hash_path(Path(tc.dev_file))

    n_stage1 = len(stage_examples(train_sources + external_sources, tc.short_answer_alternatives))
    if "stage1" in stages and n_stage1 == 0:
        raise InputError(
            f"{train_file}: no training examples after filtering ({len(train_sources)} items, "
            f"{len(external_sources)} from external sets, none with a usable answer)"
        )
    if "stage2" in stages:
        if not stage_examples(train_sources, tc.short_answer_alternatives):
            raise InputError(f"{train_file}: no stage-2 training examples after filtering ({len(train_sources)} items, none with a usable answer)")
        _check_index(Path(cfg.index.dir), config_path)
        if tc.stage2_init == "merge" and tc.qlora:
            raise InputError("train.stage2_init=merge cannot merge into a 4-bit QLoRA base; use stage2_init=continue")
        if "stage1" not in stages and not (run.adapter("stage1") / "adapter_config.json").is_file():
            raise InputError(f"{run.adapter('stage1')}: stage-1 adapter not found; run stage 1 first (krqa train --stage 1) or use --stage all")
    if resume:
        _check_resume_bases(cfg, run, stages, base_path)
    return Plan(cfg=cfg, run=run, stages=stages, resume=resume, precision=precision, base_path=base_path, train_sources=train_sources,
                external_sources=external_sources, dev_items=dev_items, data_hashes=hashes, config_path=config_path)

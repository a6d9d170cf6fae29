"""``krqa ablate``: what retrieval, each training stage and each answering choice add, with uncertainty.

A variant is a named set of changes to the config (RAG on/off, adapter, 선다형 mode, top-k, any ``--set``); each
is answered through ``krqa predict``'s code path and scored with ``krqa evaluate``'s official metrics. Per-type
scores and the final get 95% bootstrap intervals, and every row is compared with a named baseline row by a paired
bootstrap on the same questions.

Work is kept by fingerprint: a variant's predictions live in a directory named by a hash of everything that
changes its answers, and predict's own progress file resumes a killed run. Items whose answers cannot depend on a
setting are shared: 선다형 options settings do not change 단답형/서술형 answers, so those parts are answered once.
"""

from __future__ import annotations

import gc
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from krqa.ablation_plot import plot_ablation
from krqa.config import KrqaConfig, dump_config, load_config_data
from krqa.errors import InputError
from krqa.fsutil import atomic_write_json, atomic_write_text, json_sha, read_json, sha256_file
from krqa.generation.config import GenerationConfig
from krqa.generation.predict import adapter_identity
from krqa.index.types import SearchParams
from krqa.log import progress_disabled
from krqa.qa.data import MC, QUESTION_TYPES, QAItem, load_items, save_items
from krqa.qa.scorer import score
from krqa.qa.scorer.aggregate import DESC_METRICS
from krqa.qa.scorer.bootstrap import confidence, paired
from krqa.training.stages import STAGES
from krqa.wiring import resolve_adapter, run_predict

log = logging.getLogger(__name__)

# Every 선다형 / 단답형 setting by its prefix, so a new one cannot be left out of the parts' sharing below.
MC_FIELDS = tuple(f for f in GenerationConfig.model_fields if f.startswith("mc_"))
SA_FIELDS = tuple(f for f in GenerationConfig.model_fields if f.startswith("sa_"))


@dataclass
class Variant:
    """One row of the grid: ``sets`` are ``section.field=value`` overrides applied to the base config."""

    name: str
    rag: bool = True
    adapter: str | None = None
    top_k: int | None = None
    sets: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "rag": self.rag, "adapter": self.adapter, "top_k": self.top_k, "sets": self.sets}


def grid(adapters: dict[str, str | None], rag: Sequence[bool], mc_modes: Sequence[str], top_ks: Sequence[int | None],
         permutations: int = 1) -> list[Variant]:
    """The cross product the flags describe; names read like '<adapter> · RAG k=3 · score'."""
    modes: list[tuple[str, dict[str, Any]]] = []
    for mode in mc_modes:
        modes.append((mode, {"generation.mc_mode": mode}))
        if mode == "score" and permutations > 1:
            modes.append((f"score×{permutations}", {"generation.mc_mode": "score", "generation.mc_permutations": permutations}))
    out = []
    for name, path in adapters.items():
        for on in rag:
            for k in (top_ks if on else [None]):
                for label, sets in modes:
                    where = (f"RAG k={k}" if k else "RAG") if on else "no-RAG"
                    out.append(Variant(f"{name} · {where} · {label}", rag=on, adapter=path, top_k=k, sets=dict(sets)))
    return out


def run_adapters(run_dir: Path) -> dict[str, str]:
    """The finished adapters of a ``krqa train`` run by row name: 'stage 1', 'stage 2', and the stages after SFT
    named by what they continued ('stage 2 + DPO', 'stage 2 + GRPO', or 'stage 1 + …' when there was no stage 2)."""
    metrics_path = run_dir / "metrics.json"
    metrics = read_json(metrics_path) if metrics_path.is_file() else {}
    labels = {name: spec.label for name, spec in STAGES.items()}
    out: dict[str, str] = {}
    for name, spec in STAGES.items():
        adapter = run_dir / name / "adapter"
        record = metrics.get(name, {}) if isinstance(metrics, dict) else {}
        if not (adapter / "adapter_config.json").is_file() or not record.get("finished"):
            continue
        label = spec.label
        if spec.label_after_upstream:
            start = Path(record.get("init_adapter") or "").parent.name
            label = f"{labels.get(start, start)} + {label}"
        out[label] = str(adapter)
    if not out:
        raise InputError(f"{run_dir}: no finished adapters ({'/'.join(STAGES)}) in this run directory")
    return out


def read_variants(path: Path) -> list[Variant]:
    """Variants from YAML: a list of ``{name, rag, adapter, top_k, set: {key: value}}``."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read variants ({type(exc).__name__})") from None
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: expected a non-empty YAML list of variants")
    out = []
    for n, row in enumerate(data):
        if not isinstance(row, dict) or not isinstance(row.get("name"), str):
            raise InputError(f"{path}: variant #{n}: expected a mapping with a 'name'")
        unknown = set(row) - {"name", "rag", "adapter", "top_k", "set"}
        if unknown:
            raise InputError(f"{path}: variant {row['name']!r}: unknown key(s) {', '.join(sorted(unknown))}")
        out.append(Variant(row["name"], bool(row.get("rag", True)), row.get("adapter"), row.get("top_k"), dict(row.get("set") or {})))
    names = [v.name for v in out]
    if len(set(names)) != len(names):
        raise InputError(f"{path}: variant names must be unique")
    return out


def sample_items(items: list[QAItem], per_type: int | None, seed: int) -> list[QAItem]:
    """At most ``per_type`` items of each type, drawn with a seed, in file order (None: all)."""
    if per_type is None:
        return items
    rng = random.Random(seed)
    keep: set[str] = set()
    for qtype in QUESTION_TYPES:
        ids = [i.id for i in items if i.question_type == qtype]
        keep.update(rng.sample(ids, min(per_type, len(ids))))
    return [i for i in items if i.id in keep]


def variant_config(base: KrqaConfig, variant: Variant) -> KrqaConfig:
    """The base config with the variant's overrides, validated like ``--set``."""
    data = base.model_dump(mode="json")
    return load_config_data(data, [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in variant.sets.items()], f"variant {variant.name!r}")


def part_key(cfg: KrqaConfig, variant: Variant, qa_sha: str, kind: str, adapter_id: Any) -> str:
    """Hash of what changes the answers of one part (``mc``: 선다형 items; ``rest``: the other types)."""
    data = json.loads(json.dumps(cfg.model_dump(mode="json"), default=str))
    for noise in ("serve", "train", "evaluate"):
        data.pop(noise, None)
    for noise in ("batch_size", "score_pass_mb"):
        data["generation"].pop(noise, None)
    return json_sha({"cfg": data, "rag": variant.rag, "top_k": variant.top_k if variant.rag else None, "adapter": adapter_id, "qa": qa_sha, "kind": kind})[:12]


def run_variant(base: KrqaConfig, variant: Variant, items: list[QAItem], out_dir: Path, config_hint: str) -> tuple[list[str], dict[str, Any]]:
    """Answers for ``items`` (in order) and where they came from; each part is predicted once per key."""

    cfg = variant_config(base, variant)
    adapter = resolve_adapter(cfg, variant.adapter if variant.adapter is not None else "")
    answers: dict[str, str] = {}
    info: dict[str, Any] = {"parts": {}}
    defaults = type(cfg.generation)().model_dump(include=set(MC_FIELDS))
    # 단답형/서술형 answers do not depend on the 선다형 settings, nor 선다형 answers on the 단답형 span settings:
    # answer each part under the other's defaults, so variants that differ only there share one prediction part
    # (and predict's own fingerprint agrees).
    shared = cfg.model_copy(update={"generation": cfg.generation.model_copy(update=defaults)})
    mc_only = cfg.model_copy(update={"generation": cfg.generation.model_copy(update=type(cfg.generation)().model_dump(include=set(SA_FIELDS)))})
    for kind, part in (("mc", [i for i in items if i.question_type == MC]), ("rest", [i for i in items if i.question_type != MC])):
        if not part:
            continue
        cfg_part = mc_only if kind == "mc" else shared
        qa_sha = json_sha([i.to_json() for i in part])
        key = part_key(cfg_part, variant, qa_sha, kind, adapter_identity(adapter))
        part_dir = out_dir / "parts" / f"{kind}-{key}"
        qa_path = part_dir / "questions.json"
        if not qa_path.is_file():
            save_items(part, qa_path)
        cfg_part = cfg_part.model_copy(update={"predict": cfg_part.predict.model_copy(update={"rag": variant.rag})})
        report = run_predict(cfg_part, qa_path, part_dir / "pred.json", adapter=adapter or "", search=SearchParams(top_k=variant.top_k),
                             resume=True, config_hint=config_hint)
        # The model and index of this part are garbage once predict returns, but torch modules hold reference
        # cycles: collect them now, or the next part's model may load while this one is still resident.
        gc.collect()
        preds = json.loads((part_dir / "pred.json").read_text(encoding="utf-8"))
        answers.update({p["id"]: p["output"]["answer"] for p in preds})
        info["parts"][kind] = {"dir": str(part_dir), "answered_now": report["answered_now"], "resumed": report["resumed"],
                               "by_method": report["by_method"], "elapsed_s": report["elapsed_s"]}
        if kind == "rest":
            recall = span_recall(part, Path(report["details"]))
            if recall is not None:
                info["span_recall"] = recall
    return [answers[i.id] for i in items], info


def span_recall(items: list[QAItem], details: Path) -> list[float] | None:
    """Per 단답형 item, 1.0 when a gold alternative (strip-only, as EM compares) was among the candidate spans
    scored for it (0.0 when the item fell back to generation); None when no item was answered from spans. Beside
    EM it separates what the candidate generator misses from what the scorer gets wrong."""
    records = {}
    for line in details.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        records[str(rec["id"])] = rec
    short = [i for i in items if i.question_type == QUESTION_TYPES[1] and i.answer is not None]
    if not any(records.get(i.id, {}).get("span") for i in short):
        return None
    out = []
    for item in short:
        cands = {c.strip() for c in (records.get(item.id, {}).get("span") or {}).get("candidates", [])}
        out.append(float(any(alt.strip() in cands for alt in item.alternatives)))
    return out


def item_scores(report: dict[str, Any]) -> dict[str, list[float]]:
    """Per-item official scores by type, from a ``score`` report (서술형: mean of the metrics that ran)."""
    out: dict[str, list[float]] = {t: [] for t in QUESTION_TYPES}
    for it in report["items"]:
        t = it["question_type"]
        if t == MC:
            out[t].append(float(bool(it.get("correct"))))
        elif t == QUESTION_TYPES[1]:
            out[t].append(float(bool(it.get("exact"))))
        else:
            ran = [it[m] for m in DESC_METRICS if it.get(m) is not None]
            out[t].append(sum(ran) / len(ran) if ran else 0.0)
    return {t: v for t, v in out.items() if v}


def ablate(base: KrqaConfig, qa_file: Path, variants: list[Variant], out_dir: Path, baseline: str | None = None,
           per_type: int | None = None, seed: int = 0, n_boot: int = 2000, model_metrics: bool = False,
           config_hint: str = "<your config>") -> dict[str, Any]:
    """Run every variant on the same items, score them and compare them with the baseline row."""
    if not variants:
        raise InputError("no variants to run")
    names = [v.name for v in variants]
    baseline = baseline or names[0]
    if baseline not in names:
        raise InputError(f"--baseline {baseline!r}: not one of the variants ({', '.join(names)})")
    gold = sample_items(load_items(qa_file, require_answers=True), per_type, seed)
    if not gold:
        raise InputError(f"{qa_file}: no items")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    per_item: dict[str, dict[str, list[float]]] = {}
    for variant in tqdm(variants, desc="ablate", unit="variant", disable=progress_disabled()):
        answers, info = run_variant(base, variant, gold, out_dir, config_hint)
        report = score([g.to_json(a) for g, a in zip(gold, answers, strict=True)], gold, base.evaluate, model_metrics=model_metrics)
        per_item[variant.name] = item_scores(report)
        ci = confidence(per_item[variant.name], n_boot=n_boot, seed=seed)
        recall = info.pop("span_recall", None)
        if recall:
            info["span_recall"] = confidence({QUESTION_TYPES[1]: recall}, n_boot=n_boot, seed=seed)[QUESTION_TYPES[1]].to_json()
        rows.append({**variant.to_json(), "scores": {k: v.to_json() for k, v in ci.items()}, "n": {t: len(v) for t, v in per_item[variant.name].items()},
                     "desc_metrics": {m: report["by_type"]["서술형"].get(m) for m in ("rouge1", "bertscore", "bleurt")}, "unavailable": report["unavailable"], **info})
    for row in rows:
        row["vs_baseline"] = None if row["name"] == baseline else paired(per_item[row["name"]], per_item[baseline], n_boot=n_boot, seed=seed)
    result = {
        "qa": str(qa_file), "qa_sha256": sha256_file(qa_file), "items": len(gold), "by_type": {t: sum(1 for g in gold if g.question_type == t) for t in QUESTION_TYPES},
        "baseline": baseline, "bootstrap": {"resamples": n_boot, "level": 0.95, "seed": seed, "stratified_by": "question type"},
        "official": model_metrics, "config": dump_config(base), "rows": rows,
    }
    atomic_write_json(out_dir / "ablation.json", result)
    atomic_write_text(out_dir / "ablation.md", markdown_table(result))
    result["chart"] = str(plot_ablation(result, out_dir / "ablation.png"))
    return result


def _md_cell(score: dict[str, float] | None) -> str:
    return "—" if score is None else f"{score['value']:.3f} [{score['low']:.3f}, {score['high']:.3f}]"


def markdown_table(result: dict[str, Any]) -> str:
    """``ablation.md``: the table as Markdown, for a report or a README, with the same columns as the terminal."""
    desc = "서술형" if result["official"] else "서술형 ROUGE-1 ²"
    recall = any(row.get("span_recall") for row in result["rows"])
    head = ["variant", "선다형 acc", "단답형 EM", *(["단답형 candidate recall ³"] if recall else []), desc, "final ¹", "Δ final vs baseline", "p"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "--:|" * (len(head) - 1)]
    for row in result["rows"]:
        vs, sc = row["vs_baseline"], row["scores"]
        delta = "baseline" if vs is None else f"{vs['delta']:+.3f} [{vs['low']:+.3f}, {vs['high']:+.3f}]"
        p_value = "" if vs is None else f"{vs['p_value']:.3f}"
        cells = [row["name"], _md_cell(sc.get(QUESTION_TYPES[0])), _md_cell(sc.get(QUESTION_TYPES[1])),
                 *([_md_cell(row.get("span_recall"))] if recall else []), _md_cell(sc.get(QUESTION_TYPES[2])), _md_cell(sc.get("final")), delta, p_value]
        lines.append("| " + " | ".join(cells) + " |")
    counts = ", ".join(f"{t} {n}" for t, n in result["by_type"].items() if n)
    notes = [f"{result['items']} items ({counts}). ¹ mean of the per-type scores over the types present; [low, high] = 95% bootstrap "
             "interval (items resampled within each type); p = paired bootstrap, two-sided."]
    if not result["official"] and result["by_type"].get(QUESTION_TYPES[2]):
        notes.append("² BERTScore/BLEURT not run: 서술형 and final are NOT the official numbers.")
    if recall:
        notes.append("³ share of 단답형 items whose gold answer was among the candidate spans scored (generation.sa_mode extract/hybrid; "
                     "0 for an item that fell back to generation).")
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"

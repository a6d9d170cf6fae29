"""The model's own answers to the training questions, sampled once and cached beside the run.

DPO builds its pairs from them and the GRPO curriculum judges each question's difficulty by them. Sampling is
the slow part, so the raw samples are cached with a hash of everything that decides them: the adapter's files,
the exact prompt texts (so retrieval, prompt settings and chat template are covered), the token limits and the
sampling settings. A cache whose hash differs is sampled again, never reused. Scores are not cached: they are
recomputed from the raw text with the current post-processing and metric, which takes a moment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from krqa.fsutil import atomic_write_json, json_sha, load_keyed_json
from krqa.generation.config import effective_mc_target
from krqa.qa.prompts import PromptBuilder
from krqa.qa.data import QAItem
from krqa.training.rewards import AnswerScorer
from krqa.training.rlplan import RlPlan, config_on_base
from krqa.training.run import hash_path
from krqa.wiring import load_generator

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


@dataclass
class Sample:
    """One sampled completion, the answer predict would submit for it and its official score."""

    raw: str
    answer: str
    score: float


def build_prompts(plan: RlPlan, items: list[QAItem], contexts: dict[str, list[Any]], tokenizer: Any) -> dict[str, str]:
    """Prompt text per item id, built exactly as ``predict`` builds it (same builder, passages and 선다형 style)."""
    builder = PromptBuilder(plan.cfg.prompt, tokenizer, mc_target=effective_mc_target(plan.cfg.generation))
    return {item.id: builder.build_prompt(item, contexts.get(item.id, [])).text for item in items}


def sampling_key(plan: RlPlan, prompts: dict[str, str], n: int, temperature: float, top_p: float, seed: int) -> str:
    g = plan.cfg.generation
    return json_sha({
        "format": CACHE_FORMAT,
        "adapter": hash_path(plan.init_adapter),
        "base": str(plan.base_path) if plan.base_path == plan.run.merged_base() else plan.cfg.model.base,
        "prompts": json_sha(sorted(prompts.items())),
        "max_new_tokens": g.max_new_tokens.model_dump(),
        "desc_min_new_tokens": g.desc_min_new_tokens,
        "repetition_penalty": g.repetition_penalty,
        "backend": g.backend,
        "n": n, "temperature": temperature, "top_p": top_p, "seed": seed,
    })


def _load(path: Path, key: str, ids: list[str]) -> dict[str, list[str]] | None:
    raw = load_keyed_json(path, key, "samples", "sample cache", "sampling again")
    if raw is not None and not all(i in raw for i in ids):
        log.info("%s: the sample cache lacks some of these questions, sampling again", path)
        return None
    return raw


def sample_raw(plan: RlPlan, items: list[QAItem], prompts: dict[str, str], n: int, temperature: float, top_p: float,
               seed: int, cache: Path) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """``n`` raw completions per item id with the plan's starting adapter; reused from ``cache`` when its hash matches."""
    key = sampling_key(plan, prompts, n, temperature, top_p, seed)
    ids = [i.id for i in items]
    cached = _load(cache, key, ids)
    info = {"path": str(cache), "sha256": key, "samples_per_item": n, "items": len(items), "reused": cached is not None}
    if cached is not None:
        return cached, info
    generator = load_generator(config_on_base(plan), str(plan.init_adapter), temperature=temperature, top_p=top_p)
    texts = [prompts[i] for i in ids]
    types = [i.question_type for i in items]
    out: dict[str, list[str]] = {i: [] for i in ids}
    log.info("%s: sampling %d answers for each of %d questions", plan.stage, n, len(items))
    for k in range(n):
        for item_id, gen in zip(ids, generator.generate_timed(texts, types, sample_seed=seed + k), strict=True):
            out[item_id].append(gen.text)
    del generator
    atomic_write_json(cache, {"format": CACHE_FORMAT, "sha256": key, "stage": plan.stage, "adapter": str(plan.init_adapter), "samples": out}, indent=None)
    return out, info


def score_samples(items: list[QAItem], raw: dict[str, list[str]], scorer: AnswerScorer) -> dict[str, list[Sample]]:
    """Post-process and score every sample in one batch (one Kiwi/Mecab call for all 서술형 answers)."""
    flat_items = [item for item in items for _ in raw[item.id]]
    flat_raw = [text for item in items for text in raw[item.id]]
    answers = scorer.answers(flat_items, flat_raw)
    scores = scorer.score_answers(flat_items, answers)
    out: dict[str, list[Sample]] = {item.id: [] for item in items}
    for item, text, answer, value in zip(flat_items, flat_raw, answers, scores, strict=True):
        out[item.id].append(Sample(text, answer, value))
    return out

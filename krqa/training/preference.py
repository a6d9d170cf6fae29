"""``krqa train --stage dpo``: preference pairs from the model's own answers, then TRL's ``DPOTrainer``.

For every train and dev question the starting adapter (stage 2, or stage 1) answers several times with the prompt
``predict`` would build; each answer is scored by the official metric of its type. The chosen answer is the gold
answer (or, with ``dpo.chosen=best``, the best sample when it is as good as gold); the rejected answer is the
model's worst wrong sample. Questions the model always gets right give no pair: there is nothing to prefer.

Answers are the post-processed ones (what would be submitted), so chosen and rejected look like the SFT targets:
the answer alone, then end of sequence. TRL computes the DPO log-ratios over the completion tokens only, the
prompt never enters the loss, as in SFT; the reference is a frozen copy of the starting adapter.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from krqa.errors import InputError
from krqa.fsutil import atomic_write_json, json_sha
from krqa.generation.config import effective_mc_target
from krqa.qa.data import DESC, QAItem
from krqa.training.external import as_target, training_targets
from krqa.training.rewards import AnswerScorer
from krqa.training.rlconfig import DpoConfig
from krqa.training.rlplan import RlPlan, inference_contexts, load_policy
from krqa.training.sampling import Sample, build_prompts, sample_raw, score_samples
from krqa.training.stage import StageContext, StageJob, StageSpec, shared_args

log = logging.getLogger(__name__)


@dataclass
class Pair:
    id: str
    prompt: str
    chosen: str
    rejected: str
    chosen_score: float
    rejected_score: float
    chosen_from: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _correct_at(item: QAItem, cfg: DpoConfig) -> float:
    return cfg.desc_min_chosen if item.question_type == DESC else 1.0


def _as_target(item: QAItem, answer: str, mc_target: str) -> str:
    """A submitted answer in the form training targets take, so chosen and rejected differ in content, not in form
    (a number that is none of the options, which post-processing never submits, stays as it is)."""
    return as_target(item, answer, mc_target) or answer


def make_pair(item: QAItem, prompt: str, samples: list[Sample], cfg: DpoConfig, mc_target: str) -> tuple[Pair | None, str]:
    """The pair for one question, or None and why not (recorded as counts in the run's metrics)."""
    targets = training_targets(item, "first", mc_target)
    if not targets:
        return None, "no usable gold answer"
    chosen, chosen_score, chosen_from = targets[0], 1.0, "gold"
    best = max(samples, key=lambda s: s.score, default=None)
    if cfg.chosen == "best" and best is not None and best.answer.strip() and best.score >= _correct_at(item, cfg):
        chosen, chosen_score, chosen_from = _as_target(item, best.answer, mc_target), best.score, "sample"
    # 선다형/단답형 score 0 or 1: any wrong answer is rejected; 서술형 needs a clear gap to the chosen answer.
    ceiling = chosen_score - cfg.margin if item.question_type == DESC else 0.0
    wrong = [s for s in samples if s.score <= ceiling and _as_target(item, s.answer, mc_target).strip() not in ("", chosen.strip())]
    if not wrong:
        return None, "no wrong sample"
    rejected = min(wrong, key=lambda s: (s.score, -len(s.answer)))
    return Pair(item.id, prompt, chosen, _as_target(item, rejected.answer, mc_target), chosen_score, rejected.score, chosen_from), "pair"


def build_pairs(items: list[QAItem], prompts: dict[str, str], scored: dict[str, list[Sample]], cfg: DpoConfig, mc_target: str) -> tuple[list[Pair], dict[str, int]]:
    pairs: list[Pair] = []
    reasons: Counter[str] = Counter()
    for item in items:
        pair, why = make_pair(item, prompts[item.id], scored[item.id], cfg, mc_target)
        reasons[why] += 1
        if pair is not None:
            pairs.append(pair)
    return pairs, dict(reasons)


def prepare_pairs(plan: RlPlan, tokenizer: Any) -> tuple[list[Pair], list[Pair], dict[str, Any]]:
    """Sample (or reuse the cache), score and pair the train and dev questions; empty sets stop here."""
    cfg, dc = plan.cfg, plan.cfg.train.dpo
    contexts = inference_contexts(plan)
    items = list({i.id: i for i in plan.train_items + plan.dev_items}.values())
    prompts = build_prompts(plan, items, contexts, tokenizer)
    sp = dc.sampling
    raw, cache_info = sample_raw(plan, items, prompts, sp.samples, sp.temperature, sp.top_p, sp.seed, plan.run.root / "samples-dpo.json")
    scored = score_samples(items, raw, AnswerScorer(cfg.generation, cfg.evaluate.rouge_tokenizer))
    mc_target = effective_mc_target(cfg.generation)
    train, train_why = build_pairs(plan.train_items, prompts, scored, dc, mc_target)
    dev, dev_why = build_pairs(plan.dev_items, prompts, scored, dc, mc_target)
    what = f"{sp.samples} samples per question at temperature {sp.temperature}"
    if not train:
        raise InputError(f"{cfg.train.train_file}: no preference pairs from {len(plan.train_items)} train questions ({what}; {train_why}); "
                         "sample more (train.dpo.sampling.samples) or hotter (train.dpo.sampling.temperature)")
    if not dev:
        raise InputError(f"{cfg.train.dev_file}: no preference pairs from {len(plan.dev_items)} dev questions ({what}; {dev_why}); "
                         "early stopping needs dev pairs: sample more or use a larger dev set")
    mean = {t: round(sum(s.score for i in items if i.question_type == t for s in scored[i.id]) / max(1, sum(len(scored[i.id]) for i in items if i.question_type == t)), 4)
            for t in sorted({i.question_type for i in items})}
    info = {"samples": cache_info, "pairs": len(train), "dev_pairs": len(dev), "pair_outcomes": {"train": train_why, "dev": dev_why},
            "chosen_from": dict(Counter(p.chosen_from for p in train)), "sample_mean_score": mean}
    atomic_write_json(plan.run.root / "pairs-dpo.json", {"sha256": json_sha([p.to_json() for p in train + dev]), "samples_sha256": cache_info["sha256"],
                                                         "train": [p.to_json() for p in train], "dev": [p.to_json() for p in dev]}, indent=None)
    return train, dev, info


def _rows(pairs: list[Pair]) -> list[dict[str, str]]:
    return [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]


def prepare_dpo(ctx: StageContext, spec: StageSpec) -> StageJob:
    """Pairs, then the DPO trainer on them, for the stage runner."""
    from datasets import Dataset  # start-up time: datasets and trl load torch and transformers
    from trl import DPOConfig, DPOTrainer  # optional dependency: the rl extra

    plan: RlPlan = ctx.plan.inputs[spec.name]
    tokenizer = ctx.tokenizer
    train, dev, info = prepare_pairs(plan, tokenizer)
    dc, tc = plan.cfg.train.dpo, plan.cfg.train
    losses, weights = [dc.loss_type], [1.0]
    if dc.sft_weight:
        losses.append("sft")
        weights.append(dc.sft_weight)
    args = DPOConfig(
        **shared_args(ctx.plan, spec, "eval_loss", False),
        per_device_train_batch_size=tc.batch_size,
        # No truncation: TRL cuts sequences at the end, which would drop the answer; the prompt is already held to
        # prompt.max_prompt_tokens by the prompt builder and the answers are short.
        max_length=None,
        beta=dc.beta,
        loss_type=losses,
        loss_weights=weights,
        remove_unused_columns=False,
    )

    def make_trainer(callbacks: list[Any]) -> Any:
        return DPOTrainer(model=load_policy(plan), args=args, train_dataset=Dataset.from_list(_rows(train)),
                          eval_dataset=Dataset.from_list(_rows(dev)), processing_class=tokenizer, callbacks=callbacks)

    return StageJob(fingerprint={"pairs": _rows(train), "dev": _rows(dev)}, make_trainer=make_trainer, has_dev=True,
                    series={"reward_accuracy": "rewards/accuracies", "reward_margin": "rewards/margins"},
                    upstream=plan.init_adapter, base=plan.base_path, info={**info, "rag": plan.rag})

"""``krqa train --stage grpo``: TRL's ``GRPOTrainer`` with the official scorers as rewards.

Each train question's prompt is the one ``predict`` builds (with retrieved passages when the run uses RAG); the
policy samples ``num_generations`` completions, and each completion is rewarded with the official score of the
answer predict would submit for it plus a smaller format reward on the raw text (see krqa.training.rewards). GRPO
normalises the rewards within each question's group, so a question every completion gets right (or wrong) teaches
nothing; the optional curriculum samples each question first and drops those, as the 2025 entries did.

Generation runs on vLLM (colocated) when it is installed and a GPU is present, on transformers otherwise.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from typing import Any

import torch

from krqa.errors import InputError
from krqa.generation.config import effective_mc_target
from krqa.qa.data import QAItem
from krqa.training.rewards import AnswerScorer, answer_reward, format_reward
from krqa.training.rlconfig import CurriculumConfig
from krqa.training.rlplan import RlPlan, inference_contexts, load_policy
from krqa.training.sampling import Sample, build_prompts, sample_raw, score_samples
from krqa.training.stage import StageContext, StageJob, StageSpec, shared_args

log = logging.getLogger(__name__)

REWARDS = ("official", "format")


def difficulty_filter(items: list[QAItem], scored: dict[str, list[Sample]], cur: CurriculumConfig) -> tuple[list[QAItem], dict[str, int]]:
    """The questions worth training on: drop those every sample got right / none did, as configured."""
    kept: list[QAItem] = []
    counts = {"always_right": 0, "always_wrong": 0, "kept": 0}
    for item in items:
        scores = [s.score for s in scored[item.id]]
        if cur.drop_always_right and scores and all(v >= cur.right_at for v in scores):
            counts["always_right"] += 1
            continue
        if cur.drop_always_wrong and scores and all(v <= cur.wrong_at for v in scores):
            counts["always_wrong"] += 1
            continue
        counts["kept"] += 1
        kept.append(item)
    return kept, counts


def use_vllm(setting: str) -> bool:
    """'auto': vLLM when it is importable and a CUDA GPU is there (vLLM needs one); 'yes' insists."""
    available = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()
    if setting == "yes" and not available:
        raise InputError("train.grpo.use_vllm=yes: vLLM needs a CUDA GPU and pip install -e '.[vllm]'; use 'auto' or 'no'")
    return setting == "yes" or (setting == "auto" and available)


def _row(item: QAItem, prompt: str) -> dict[str, str]:
    return {"prompt": prompt, "id": item.id, "question_type": item.question_type, "question": item.question, "answer": item.answer or ""}


def prepare_prompts(plan: RlPlan, tokenizer: Any, scorer: AnswerScorer) -> tuple[list[dict[str, str]], list[dict[str, str]], dict[str, Any]]:
    """Train and dev rows for the trainer; with the curriculum, the train questions that pass it."""
    gc = plan.cfg.train.grpo
    contexts = inference_contexts(plan)
    dev_items = plan.dev_items[: gc.max_eval_items]
    prompts = build_prompts(plan, plan.train_items + dev_items, contexts, tokenizer)
    train_items = plan.train_items
    info: dict[str, Any] = {"questions": len(train_items)}
    if gc.curriculum is not None:
        cur = gc.curriculum
        raw, cache = sample_raw(plan, train_items, prompts, cur.samples, cur.temperature, 1.0, cur.seed, plan.run.root / "samples-grpo.json")
        train_items, counts = difficulty_filter(train_items, score_samples(train_items, raw, scorer), cur)
        info["curriculum"] = {"samples": cache, **counts}
        if not train_items:
            raise InputError(f"{plan.cfg.train.train_file}: the curriculum dropped all {len(plan.train_items)} train questions "
                             f"({counts['always_right']} always right, {counts['always_wrong']} always wrong in {cur.samples} samples); "
                             "turn off train.grpo.curriculum.drop_always_right/drop_always_wrong or sample more")
    info["train_questions"] = len(train_items)
    info["dev_questions"] = len(dev_items)
    return [_row(i, prompts[i.id]) for i in train_items], [_row(i, prompts[i.id]) for i in dev_items], info


def prepare_grpo(ctx: StageContext, spec: StageSpec) -> StageJob:
    """Curriculum (optional), then the GRPO trainer, for the stage runner."""
    from datasets import Dataset  # start-up time: datasets and trl load torch and transformers
    from trl import GRPOConfig, GRPOTrainer  # optional dependency: the rl extra

    plan: RlPlan = ctx.plan.inputs[spec.name]
    cfg, tc, gc = plan.cfg, plan.cfg.train, plan.cfg.train.grpo
    unknown = set(gc.reward_weights) - set(REWARDS)
    if unknown:
        raise InputError(f"train.grpo.reward_weights: unknown reward(s) {', '.join(sorted(unknown))}; expected {', '.join(REWARDS)}")
    tokenizer = ctx.tokenizer
    scorer = AnswerScorer(cfg.generation, cfg.evaluate.rouge_tokenizer)
    train_rows, dev_rows, info = prepare_prompts(plan, tokenizer, scorer)
    # a batch holds whole groups: round the per-device batch up to a multiple of num_generations
    batch = math.ceil(tc.batch_size / gc.num_generations) * gc.num_generations
    max_tokens = max(getattr(cfg.generation.max_new_tokens, t) for t in {r["question_type"] for r in train_rows + dev_rows})
    vllm = use_vllm(gc.use_vllm)
    weights = [gc.reward_weights.get(name, 0.0) for name in REWARDS]
    info.update(batch_completions=batch, max_completion_length=max_tokens, vllm=vllm, reward_weights=dict(zip(REWARDS, weights)))
    args = GRPOConfig(
        **{**shared_args(ctx.plan, spec, "eval_reward", True), "per_device_eval_batch_size": batch},
        per_device_train_batch_size=batch,
        num_generations=gc.num_generations,
        max_completion_length=max_tokens,
        temperature=gc.temperature,
        repetition_penalty=cfg.generation.repetition_penalty,
        beta=gc.beta,
        reward_weights=weights,
        use_vllm=vllm,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=cfg.generation.vllm_gpu_memory_utilization,
        remove_unused_columns=False,
        log_completions=False,
    )
    rewards = [answer_reward(scorer), format_reward(effective_mc_target(cfg.generation))]

    def make_trainer(callbacks: list[Any]) -> Any:
        return GRPOTrainer(model=load_policy(plan), reward_funcs=rewards, args=args, train_dataset=Dataset.from_list(train_rows),
                           eval_dataset=Dataset.from_list(dev_rows), processing_class=tokenizer, callbacks=callbacks)

    return StageJob(fingerprint={"train": train_rows, "dev": dev_rows, "batch": batch, "max_tokens": max_tokens}, make_trainer=make_trainer,
                    has_dev=True, metric="eval_reward", greater_is_better=True,
                    series={"train_reward": "reward", "train_official": "rewards/official/mean", "train_format": "rewards/answer_format/mean"},
                    upstream=plan.init_adapter, base=plan.base_path, info={**info, "rag": plan.rag})

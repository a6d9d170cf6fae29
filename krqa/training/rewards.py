"""Rewards for preference (DPO pairs) and reward (GRPO) training: the official scorers, plus a format reward.

The answer reward is exactly what the leaderboard would give the answer ``krqa predict`` submits for a completion:
the completion goes through the same post-processing as at inference, then 선다형 is raw-string equality with the
gold option, 단답형 is ``pred.strip() == alt.strip()`` over the ``#`` alternatives (inner spaces count), 서술형 is
ROUGE-1 F1 over morphemes (Mecab when installed, else Kiwi; ``evaluate.rouge_tokenizer``). Scoring the
post-processed answer keeps training aimed at the submitted score; the separate format reward scores the *raw*
completion, so the model is also pushed to write the clean answer itself instead of relying on the clean-up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from krqa.errors import KrqaError
from krqa.generation.config import GenerationConfig
from krqa.qa.answers import desc_problem, postprocess, strip_particles
from krqa.qa.data import DESC, MC, SHORT, QAItem
from krqa.qa.scorer.lexical import is_option_answer, make_tokenizer, mc_correct, rouge1_scores, short_exact

SHORT_MAX_WORDS = 5


class RewardError(KrqaError):
    """A reward that is not a finite number: training on it would silently corrupt every later step."""


def check_finite(values: Sequence[float], name: str, ids: Sequence[str]) -> list[float]:
    """The rewards as floats; the first NaN/inf stops the run with the reward's name and the item id."""
    out = [float(v) for v in values]
    for value, item_id in zip(out, ids, strict=True):
        if not math.isfinite(value):
            raise RewardError(f"reward {name!r} is {value} for item {item_id!r}; rewards must be finite numbers")
    return out


@dataclass
class AnswerScorer:
    """Official per-item scores of post-processed answers; ``rouge_tokenizer`` is ``evaluate.rouge_tokenizer``."""

    gen_cfg: GenerationConfig
    rouge_tokenizer: str = "auto"

    def answers(self, items: Sequence[QAItem], completions: Sequence[str]) -> list[str]:
        """What predict would submit for each completion."""
        return [postprocess(item, text, self.gen_cfg.desc_max_chars) for item, text in zip(items, completions, strict=True)]

    def score_answers(self, items: Sequence[QAItem], answers: Sequence[str]) -> list[float]:
        """Official scores of already post-processed answers (1/0 for 선다형 and 단답형, ROUGE-1 F1 for 서술형)."""
        scores = [0.0] * len(items)
        desc = [i for i, item in enumerate(items) if item.question_type == DESC]
        for i, (item, answer) in enumerate(zip(items, answers, strict=True)):
            gold = item.answer or ""
            if item.question_type == MC:
                scores[i] = float(mc_correct(answer, gold))
            elif item.question_type == SHORT:
                scores[i] = float(short_exact(answer, gold))
        if desc:
            rouge = rouge1_scores([answers[i] for i in desc], [items[i].answer or "" for i in desc], make_tokenizer(self.rouge_tokenizer))
            for i, value in zip(desc, rouge, strict=True):
                scores[i] = value
        return scores

    def score(self, items: Sequence[QAItem], completions: Sequence[str]) -> list[float]:
        return self.score_answers(items, self.answers(items, completions))


def format_score(item: QAItem, completion: str, mc_target: str = "number") -> float:
    """1.0 when the raw completion already has the answer's form, else 0.0.

    선다형: exactly an option number (or, when options are scored as text, exactly one option's text); 단답형: one
    line of at most a few words that Kiwi finds no trailing particle, copula or ending on; 서술형: one paragraph that
    passes the prose checks inference applies (no section path, no prompt markup, ends like a sentence).
    """
    text = completion.strip()
    if not text:
        return 0.0
    if item.question_type == MC:
        if mc_target == "number" or not item.options:
            return float(is_option_answer(text, len(item.options) or 9))
        return float(text in [o.strip() for o in item.options])
    if item.question_type == SHORT:
        one_line = "\n" not in text and len(text.split()) <= SHORT_MAX_WORDS
        return float(one_line and strip_particles(text) == text and not text.endswith((".", "。")))
    return float("\n" not in text and desc_problem(text) is None)


def item_from_row(row: dict[str, Any]) -> QAItem:
    """Rebuild the item a dataset row stands for (TRL passes dataset columns to reward functions as lists)."""
    return QAItem(id=row["id"], category="", domain="", question_type=row["question_type"], topic_keyword="", question=row["question"], answer=row["answer"])


def _rows(kwargs: dict[str, Any], n: int) -> list[QAItem]:
    keys = ("id", "question_type", "question", "answer")
    missing = [k for k in keys if k not in kwargs]
    if missing:
        raise KrqaError(f"reward function called without dataset column(s) {', '.join(missing)}")
    return [item_from_row({k: kwargs[k][i] for k in keys}) for i in range(n)]


def _text(completion: Any) -> str:
    """TRL passes plain strings for standard prompts and message lists for conversational ones."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if isinstance(m, dict))


def answer_reward(scorer: AnswerScorer) -> Callable[..., list[float]]:
    """A TRL reward function: the official score of each completion's submitted answer."""

    def official(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        items = _rows(kwargs, len(completions))
        return check_finite(scorer.score(items, [_text(c) for c in completions]), "official", [i.id for i in items])

    return official


def format_reward(mc_target: str) -> Callable[..., list[float]]:
    """A TRL reward function: :func:`format_score` of each raw completion."""

    def answer_format(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        items = _rows(kwargs, len(completions))
        return check_finite([format_score(i, _text(c), mc_target) for i, c in zip(items, completions, strict=True)], "format", [i.id for i in items])

    return answer_format

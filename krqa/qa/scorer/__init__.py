"""Official NIKL 한국문화 질의응답 scoring: string metrics, model metrics and the leaderboard roll-up."""

from krqa.qa.scorer.aggregate import final_score, match_predictions, score, summarize
from krqa.qa.scorer.lexical import (
    make_tokenizer, mc_correct, mc_correct_lenient, rouge1_f1, rouge1_scores, short_exact, short_exact_no_space, short_relaxed,
)
from krqa.qa.scorer.model_scores import BertScorer, BleurtScorer, MetricUnavailable

__all__ = [
    "BertScorer", "BleurtScorer", "MetricUnavailable", "final_score", "make_tokenizer", "match_predictions",
    "mc_correct", "mc_correct_lenient", "rouge1_f1", "rouge1_scores", "score", "short_exact", "short_exact_no_space",
    "short_relaxed", "summarize",
]

"""GRPO/DPO rewards: the official scorer on hand-checked answers, the format reward, NaN handling."""

from __future__ import annotations

import math

import pytest

from krqa.generation.config import GenerationConfig
from krqa.qa.config import EvaluateConfig
from krqa.qa.data import QAItem
from krqa.qa.scorer import score
from krqa.training.rewards import AnswerScorer, RewardError, answer_reward, check_finite, format_reward, format_score

MC_Q = "설날 아침에 먹는 음식은? \\n 1\\t송편 2\\t떡국 3\\t팥죽 4\\t오곡밥"


def _item(i: str, qtype: str, answer: str) -> QAItem:
    return QAItem(id=i, category="c", domain="d", question_type=qtype, topic_keyword="k", question=MC_Q if qtype == "선다형" else "질문", answer=answer)


def _cols(items: list[QAItem]) -> dict[str, list[str]]:
    return {"id": [i.id for i in items], "question_type": [i.question_type for i in items], "question": [i.question for i in items], "answer": [i.answer or "" for i in items]}


@pytest.fixture(scope="module")
def scorer() -> AnswerScorer:
    return AnswerScorer(GenerationConfig(), "kiwi")


# Hand-checked: (item, raw completion, official score of the answer predict would submit)
CASES = [
    (_item("m1", "선다형", "2"), "2", 1.0),
    (_item("m2", "선다형", "2"), "정답은 2번입니다", 1.0),  # post-processing finds the number, as predict does
    (_item("m3", "선다형", "2"), "3", 0.0),
    (_item("m4", "선다형", "2"), "떡국", 1.0),  # the option's text maps to its number
    (_item("s1", "단답형", "만 나이#세는 나이"), "만 나이", 1.0),
    (_item("s2", "단답형", "만 나이#세는 나이"), "만나이", 0.0),  # inner spaces count, officially
    (_item("s3", "단답형", "만 나이#세는 나이"), "  세는 나이 ", 1.0),
    (_item("s4", "단답형", "강강술래"), "강강술래예요.", 1.0),  # the copula is removed before scoring
    (_item("d1", "서술형", "설날 송편"), "설날 떡국", 0.5),  # morphs 설날|떡국 vs 설날|송편: P = R = 1/2
    (_item("d2", "서술형", "설날 떡국"), "설날 떡국", 1.0),
    (_item("d3", "서술형", "설날 떡국"), "추석", 0.0),
]


def test_answer_scores_are_hand_checked(scorer: AnswerScorer) -> None:
    items = [c[0] for c in CASES]
    got = scorer.score(items, [c[1] for c in CASES])
    assert got == pytest.approx([c[2] for c in CASES])


def test_answer_scores_equal_the_official_scorer(scorer: AnswerScorer) -> None:
    items = [c[0] for c in CASES]
    answers = scorer.answers(items, [c[1] for c in CASES])
    report = score([i.to_json(a) for i, a in zip(items, answers)], items, EvaluateConfig(rouge_tokenizer="kiwi"), model_metrics=False)
    official = []
    for it in report["items"]:
        official.append(float(it["correct"]) if it["question_type"] == "선다형" else float(it["exact"]) if it["question_type"] == "단답형" else it["rouge1"])
    assert scorer.score_answers(items, answers) == pytest.approx(official)


def test_mc_gold_is_compared_as_the_raw_string(scorer: AnswerScorer) -> None:
    # a gold written " 2" would never match the scorer's "2" either
    assert scorer.score_answers([_item("m", "선다형", " 2")], ["2"]) == [0.0]


@pytest.mark.parametrize(
    ("qtype", "completion", "want"),
    [
        ("선다형", "2", 1.0),
        ("선다형", "2번", 0.0),
        ("선다형", "5", 0.0),  # only 4 options
        ("선다형", "", 0.0),
        ("단답형", "만 나이", 1.0),
        ("단답형", "강강술래예요", 0.0),
        ("단답형", "강강술래를", 0.0),
        ("단답형", "강강술래.", 0.0),
        ("단답형", "한국에서 나이를 세는 방법 중 하나로 널리 쓰임", 0.0),
        ("서술형", "설날에는 떡국을 먹으며 한 살을 더 먹는다고 여긴다.", 1.0),
        ("서술형", "설날에는 떡국을 먹는다.\n\n추석에는 송편을 먹는다.", 0.0),
        ("서술형", "설날 > 풍습 > 음식 이야기가 이어진다.", 0.0),
        ("서술형", "떡국", 0.0),
    ],
)
def test_format_score(qtype: str, completion: str, want: float) -> None:
    assert format_score(_item("x", qtype, "2"), completion) == want


def test_format_score_for_option_text_targets() -> None:
    item = _item("x", "선다형", "2")
    assert format_score(item, "떡국", "cloze") == 1.0
    assert format_score(item, "2", "cloze") == 0.0


def test_trl_reward_functions_read_dataset_columns(scorer: AnswerScorer) -> None:
    items = [_item("m1", "선다형", "2"), _item("s1", "단답형", "만 나이")]
    official = answer_reward(scorer)(prompts=["p", "p"], completions=["2", "만 나이를"], **_cols(items))
    assert official == [1.0, 1.0]
    fmt = format_reward("number")(prompts=["p", "p"], completions=[[{"role": "assistant", "content": "2"}], "만 나이를"], **_cols(items))
    assert fmt == [1.0, 0.0]


def test_nan_reward_is_a_one_line_error() -> None:
    with pytest.raises(RewardError, match=r"reward 'official' is nan for item 'b'") as err:
        check_finite([0.5, math.nan], "official", ["a", "b"])
    assert "\n" not in str(err.value)

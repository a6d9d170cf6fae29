"""The official scorer's string metrics on hand-made cases and the leaderboard roll-up (no models)."""

from __future__ import annotations


import pytest

from krqa.errors import InputError
from krqa.qa.config import EvaluateConfig
from krqa.qa.data import QAItem
from krqa.qa.scorer import (
    final_score, match_predictions, mc_correct, rouge1_f1,
    rouge1_scores, score, short_exact, short_relaxed,
)
from krqa.qa.scorer.aggregate import ItemScore, summarize
from krqa.qa.scorer.lexical import (
    KiwiTokenizer, make_tokenizer, mc_correct_lenient, mecab_available, rouge_preprocess, short_exact_no_space,
)

MC_Q = "보기 중 고르시오 \\n 1\\t가 2\\t나 3\\t다"


def _item(i: str, qtype: str, answer: str, domain: str = "역사", category: str = "문화 지식") -> QAItem:
    question = MC_Q if qtype == "선다형" else "질문"
    return QAItem(id=i, category=category, domain=domain, question_type=qtype, topic_keyword="k", question=question, answer=answer)


def test_mc_accuracy_is_the_raw_option_string() -> None:
    assert mc_correct("3", "3")
    assert not mc_correct(" 3 ", "3")  # the official scorer compares raw strings
    assert mc_correct_lenient(" 3 ", "3")
    assert not mc_correct("3번", "3")
    assert not mc_correct("2", "3")


def test_short_exact_strips_ends_only_and_accepts_any_alternative() -> None:
    gold = "직지심체요절#직지 심체요절#Jikji"
    assert not short_exact("직지 심체 요절", gold)  # inner spaces count officially
    assert short_exact_no_space("직지 심체 요절", gold)
    assert short_exact(" 직지 심체요절 ", gold)
    assert short_exact(" Jikji\n", gold)
    assert not short_exact("jikji", gold)  # case is not forgiven officially
    assert not short_exact("직지심체요절입니다", gold)
    assert not short_exact("직지심체요절#Jikji", "직지심체요절")  # '#' only splits the gold side


def test_short_relaxed_is_looser_than_exact() -> None:
    assert short_relaxed("jikji", "Jikji")
    assert short_relaxed("녹색 성장입니다.", "녹색성장")
    assert short_relaxed("'의열단'", "의열단")
    assert short_relaxed("조선의 호조", "호조")
    assert not short_relaxed("", "호조")
    assert not short_relaxed("병조", "호조")


def test_rouge1_f1_clips_repeated_unigrams() -> None:
    assert rouge1_f1(["a", "a", "b"], ["a", "b", "b"]) == pytest.approx(2 / 3)
    assert rouge1_f1([], ["a"]) == 0.0
    assert rouge1_f1(["x"], ["y"]) == 0.0


def test_rouge_preprocess_drops_non_word_characters_and_lowercases() -> None:
    assert rouge_preprocess("조선(朝鮮)은 ABC-123, “좋다”!") == "조선    은 abc 123   좋다"
    assert rouge_preprocess(" ".join(["w"] * 1200)).split() == ["w"] * 1000


@pytest.mark.parametrize("kind", ["mecab", "kiwi"])
def test_rouge1_over_morphemes(kind: str) -> None:
    if kind == "mecab" and not mecab_available():
        pytest.skip("mecab-ko not installed")
    tok = make_tokenizer(kind)
    same = "세종대왕은 훈민정음을 창제하였다."
    scores = rouge1_scores([same, "세종(世宗)대왕!!! 훈민정음", "ABC"], [same, "세종대왕 훈민정음", "xyz"], tok)
    assert scores[0] == pytest.approx(1.0)
    assert scores[1] == pytest.approx(1.0)  # hanja and punctuation vanish before tokenising
    assert scores[2] == 0.0
    assert (kind == "mecab") == tok.name.startswith("mecab")


def test_kiwi_and_hand_count_agree() -> None:
    tok = KiwiTokenizer()
    pred, gold = "한국의 전통 음식은 김치이다", "김치는 한국의 전통 음식이다"
    p, g = tok.morphs_batch([rouge_preprocess(pred), rouge_preprocess(gold)])
    assert rouge1_scores([pred], [gold], tok)[0] == pytest.approx(rouge1_f1(p, g))
    assert 0.5 < rouge1_f1(p, g) < 1.0


def test_final_matches_the_issue_example() -> None:
    final = final_score({"선다형": 0.4715, "단답형": 0.4118, "서술형": 0.5586})
    assert round(final, 4) == 0.4806
    assert round(final_score({"선다형": 0.4715, "단답형": 0.4118, "서술형": (0.4109 + 0.7198 + 0.5450) / 3}) * 100, 2) == 48.06


def test_summarize_absent_type_and_unavailable_metric() -> None:
    items = [
        ItemScore("1", "선다형", "d", "c", correct=True),
        ItemScore("2", "선다형", "d", "c", correct=False),
        ItemScore("3", "서술형", "d", "c", rouge1=0.4, bertscore=0.8, bleurt=0.6),
    ]
    full = summarize(items, {})
    assert full["types_missing"] == ["단답형"]
    assert full["final"] == pytest.approx((0.5 + 0.6) / 2)
    assert not full["comparable_with_leaderboard"]
    partial = summarize(items, {"bleurt": "no model"})
    assert partial["final"] is None and partial["final_x100"] is None
    assert partial["by_type"]["서술형"]["bleurt"] is None
    assert partial["final_available"] == pytest.approx((0.5 + 0.6) / 2)
    no_desc = summarize(items[:2], {"bleurt": "no model"})
    assert no_desc["final"] == pytest.approx(0.5)


def test_match_predictions_errors() -> None:
    gold = [_item("a", "단답형", "x"), _item("b", "단답형", "y")]
    ok = [{"id": "b", "output": {"answer": "2"}}, {"id": "a", "output": {"answer": "1"}}]
    assert match_predictions(ok, gold) == ["1", "2"]
    cases = {
        "not predicted: 'b'": [{"id": "a", "output": {"answer": "1"}}],
        "not in gold: 'c'": [*ok, {"id": "c", "output": {"answer": "1"}}],
        "duplicate ids: 'a'": [*ok, {"id": "a", "output": {"answer": "1"}}],
        "question_type": [{"id": "a", "input": {"question_type": "서술형"}, "output": {"answer": "1"}}, ok[0]],
    }
    for fragment, preds in cases.items():
        with pytest.raises(InputError, match=fragment) as err:
            match_predictions(preds, gold, "p.json", "gold")
        assert "\n" not in str(err.value)


def test_score_end_to_end_without_models() -> None:
    gold = [
        _item("1", "선다형", "2", domain="역사"), _item("2", "선다형", "3", domain="지리"),
        _item("3", "단답형", "하이패스#하이 패스", domain="역사"), _item("4", "단답형", "호조", domain="지리"),
        _item("5", "서술형", "세종대왕은 훈민정음을 만들었다.", domain="역사", category="문화 관점"),
    ]
    preds = [g.to_json(a) for g, a in zip(gold, ["2", "1", "하이 패스", "호조입니다", "세종대왕은 훈민정음을 만들었다"])]
    report = score(preds, gold, EvaluateConfig(), model_metrics=False)
    assert report["by_type"]["선다형"]["accuracy"] == 0.5
    assert report["by_type"]["단답형"]["exact_match"] == 0.5
    assert report["by_type"]["단답형"]["relaxed_match_not_official"] == 1.0
    assert report["by_type"]["서술형"]["rouge1"] == pytest.approx(1.0)
    assert set(report["unavailable"]) == {"bertscore", "bleurt"}
    assert report["final"] is None
    assert report["final_available"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert report["by_domain"]["지리"]["final"] == pytest.approx(0.0)  # no 서술형 there: official final exists
    assert report["by_domain"]["역사"]["by_type"]["선다형"]["accuracy"] == 1.0
    assert set(report["by_category"]) == {"문화 지식", "문화 관점"}
    assert report["rouge_tokenizer"]

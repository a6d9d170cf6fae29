"""단답형 by span extraction: the candidates a passage gives, pruning, the gold's span form, scoring with the end of
the answer against a brute-force pass, and the Answerer's extract / hybrid modes and their fallbacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from krqa.generation import spans
from krqa.generation.config import GenerationConfig
from krqa.generation.scoring import score_continuations
from krqa.index.types import Hit
from krqa.qa.data import QAItem

PASSAGE = ("고수(鼓手)는 판소리에서 소리꾼 옆에 앉아 북으로 장단을 맞추는 사람을 말한다. 1989년 2월 15일 서울대학교 총학생회장 "
           "임종석이 '전대협'을 이끌었고, 약 300명의 학생이 새로운 음악을 들었다. 제1차 왕자의 난 이후 GP-슈트레케를 지었다.")


def test_candidates_hold_the_expected_spans_without_particles() -> None:
    found = {c.text for c in spans.passage_candidates([PASSAGE])}
    for expected in ("고수", "고수(鼓手)", "판소리", "소리꾼", "장단", "1989년 2월 15일", "2월 15일", "서울대학교", "임종석",
                     "서울대학교 총학생회장 임종석", "전대협", "300명", "새로운 음악", "왕자의 난", "제1차 왕자의 난", "GP-슈트레케", "鼓手"):
        assert expected in found, expected
    # particles, copulas and endings never end a candidate; nothing is cut inside a word's start
    for wrong in ("판소리에서", "임종석이", "전대협을", "300명의", "사람을", "말한다", "종석", "임종", "명", "2월 15"):
        assert wrong not in found, wrong


def test_candidates_are_deduplicated_and_record_every_occurrence() -> None:
    one = spans.passage_candidates([PASSAGE])
    two = spans.passage_candidates([PASSAGE, PASSAGE])
    assert [c.text for c in one] == [c.text for c in two]
    gosu = next(c for c in two if c.text == "고수")
    assert gosu.occurrences == [(0, 0), (1, 0)]


WEIGHTS = GenerationConfig().sa_feature_weights


def test_pruning_keeps_the_cap_and_prefers_spans_near_the_question() -> None:
    found = spans.passage_candidates([PASSAGE])
    kept = spans.prune(found, [PASSAGE], "판소리에서 북으로 장단을 맞추는 사람을 무엇이라 하는가?", 8, WEIGHTS)
    assert len(kept) == 8
    texts = [c.text for c in kept]
    assert "고수" in texts
    # a candidate that only repeats the question ranks below one that does not
    assert "판소리" not in texts or texts.index("고수") < texts.index("판소리")
    # 언제 asks for a date: the dates of the passage rank first
    when = spans.prune(found, [PASSAGE], "임종석이 전대협을 이끈 것은 언제인가?", 5, WEIGHTS)
    assert spans._DATE.search(when[0].text)
    assert spans.prune([], [PASSAGE], "무엇인가?", 5, WEIGHTS) == []


def test_features_say_where_a_candidate_sits_against_the_question() -> None:
    found = spans.passage_candidates([PASSAGE])
    by_text = {c.text: f for c, f in zip(found, spans.candidate_features(found, [PASSAGE], "판소리에서 장단을 맞추는 사람은 누구인가?"), strict=True)}
    assert set(by_text["고수"]) == set(spans.FEATURES)
    assert by_text["판소리"]["in_question"] == 1.0 and by_text["고수"]["in_question"] == 0.0
    assert by_text["고수"]["before_gloss"] == 1.0 and by_text["고수(鼓手)"]["before_topic"] == 1.0
    assert by_text["고수"]["best_sentence"] == 1.0 and by_text["전대협"]["best_sentence"] == 0.0
    assert by_text["고수"]["near"] >= 2 and by_text["GP-슈트레케"]["near"] == 0
    # support: the question's words around it in its own sentence, the nearer the more
    assert by_text["북"]["support"] > by_text["고수"]["support"] > 0 and by_text["전대협"]["support"] == 0
    assert by_text["1989년 2월 15일"]["number"] == 1.0 and by_text["서울대학교"]["proper_noun"] == 1.0
    assert by_text["2월 15일"]["inside"] > 0 and by_text["1989년 2월 15일"]["covers"] > 0
    # the noun a question asks which one of: an answer ending with it
    assert spans.asked_heads("오르샤에서 무슨 강을 건넜는가?") == {"강"} and spans.asked_heads("어느 지역에서 일어났는가?") == {"지역"}
    assert spans.asked_heads("장단을 맞추는 사람은 누구인가?") == set()
    asked = dict(zip([c.text for c in found], spans.candidate_features(found, [PASSAGE], "어느 대학교에서 열렸는가?"), strict=True))
    assert asked["서울대학교"]["asked_head"] == 1.0 and asked["고수"]["asked_head"] == 0.0
    # weights for a feature the scorer does not know are refused when the config is read
    with pytest.raises(ValueError, match="unknown span feature"):
        GenerationConfig(sa_feature_weights={"nearness": 1.0})


def test_generated_answer_is_snapped_to_a_passage_span() -> None:
    cands, found = spans.item_candidates([PASSAGE], "판소리에서 북을 치는 사람은?", 4, WEIGHTS, greedy="고 수", snap_ratio=0.8)
    assert cands[0].text == "고수" and cands[0].source == "generated-span" and len(cands) == 4 and found > 4
    cands, _ = spans.item_candidates([PASSAGE], "판소리에서 북을 치는 사람은?", 4, WEIGHTS, greedy="북잡이 명인", snap_ratio=0.8)
    assert cands[0].text == "북잡이 명인" and cands[0].source == "generated"


def test_span_target_takes_the_passage_spelling() -> None:
    assert spans.span_target(["만6세", "임종석"], [PASSAGE]) == "임종석"
    assert spans.span_target(["1989년2월15일"], [PASSAGE]) == "1989년 2월 15일"
    assert spans.span_target(["없는 답"], [PASSAGE]) is None
    assert spans.span_target(["고수"], []) is None


def _tiny_gemma():
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=97, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1,
                           head_dim=16, intermediate_size=64, max_position_embeddings=256, sliding_window=8,
                           layer_types=["sliding_attention", "full_attention", "sliding_attention"], pad_token_id=0)
    return Gemma3ForCausalLM(cfg).eval()


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("pass_bytes", [40_000, 2**30])  # several passes, each on its own rows of the cache; one pass
def test_scores_with_the_end_of_answer_equal_brute_force(batch_size: int, pass_bytes: int) -> None:
    """log p(span) + log sum p(stop | span): from the shared prompt cache, exactly as one full pass per candidate."""
    model = _tiny_gemma()
    rng = np.random.default_rng(3)
    prompts = [rng.integers(3, 97, size=n).tolist() for n in (6, 19, 12)]
    conts = [[rng.integers(3, 97, size=m).tolist() for m in lengths] for lengths in ((1, 3, 2), (2, 5, 1, 1), (4,))]
    stop = [1, 2]
    got = score_continuations(model, prompts, conts, pad_id=0, batch_size=batch_size, stop_ids=stop, pass_bytes=pass_bytes)
    for p, cs, row in zip(prompts, conts, got, strict=True):
        for c, (lp, n) in zip(cs, row, strict=True):
            with torch.inference_mode():
                logp = torch.log_softmax(model(input_ids=torch.tensor([p + c])).logits.float(), dim=-1)[0]
            want = float(sum(logp[len(p) - 1 + t, tok] for t, tok in enumerate(c)) + torch.logsumexp(logp[len(p) + len(c) - 1, stop], 0))
            assert n == len(c)
            assert lp == pytest.approx(want, abs=1e-4)


# ---- the Answerer -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generator(tiny_cfg):
    from krqa.generation.factory import make_generator

    return make_generator(tiny_cfg.model, tiny_cfg.generation)


class _Fixed:
    """A retriever that returns the same passage for every question (the passage under test)."""

    manifest = None

    def __init__(self, text: str, score: float = 9.0) -> None:
        self.hit = Hit(0, score, "doc", "고수", "", text, "test", "")

    def search_items(self, items, top_k=None, mode=None):
        return [[self.hit] for _ in items]


def _answerer(tiny_cfg, generator, retriever, **generation):
    from krqa.wiring import make_answerer

    cfg = tiny_cfg.model_copy(update={"generation": tiny_cfg.generation.model_copy(update=generation),
                                      "retrieval": tiny_cfg.retrieval.model_copy(update={"min_score": None})})
    return make_answerer(cfg, retriever, generator)


ITEM = QAItem("sa-1", "문화 지식", "예술", "단답형", "판소리", "판소리에서 북을 치며 장단을 맞추는 사람을 무엇이라 하는가?", answer="고수")


def test_extract_answers_with_a_passage_span_and_its_probability(tiny_cfg, generator) -> None:
    res = _answerer(tiny_cfg, generator, _Fixed(PASSAGE), sa_mode="extract", sa_max_candidates=6).answer_items([ITEM], rag=True)[0]
    assert res.method == "extract" and res.span is not None
    assert res.answer == res.span["text"] and res.answer in res.span["candidates"] and len(res.span["candidates"]) == 6
    assert res.answer in PASSAGE and 0.0 < res.span["prob"] <= 1.0 and res.new_tokens == 0


def test_statement_puts_the_candidate_in_the_wh_words_place() -> None:
    assert spans.statement_parts("알아사드는 국영 TV를 통해 무엇을 약속했는가?") == ("알아사드는 국영 TV를 통해", "을 약속했는가?")
    assert spans.statement_parts("멕클레이 선교사는 당시 한국의 어떤 왕에게 허가를 받았는가?") == ("멕클레이 선교사는 당시 한국의", "에게 허가를 받았는가?")
    assert spans.statement_parts("성 베드로 광장에는 기둥이 총 몇 개 있는가?") == ("성 베드로 광장에는 기둥이 총", " 있는가?")
    assert spans.statement_parts("장거리 서킷인 뉘르부르크링이 위치한 나라는?") == ("장거리 서킷인 뉘르부르크링이 위치한 나라는", "")
    # the particle after the gap takes the form the candidate's last syllable asks for
    assert spans.statement_continuation("국가비상사태의 해제", "알아사드는", "을 약속했는가?") == " 국가비상사태의 해제를 약속했는가?"
    assert spans.statement_continuation("드네프르 강", "", "을 건넜는가?") == "드네프르 강을 건넜는가?"
    assert spans.with_particle("서울", "으로 갔는가?") == "로 갔는가?" and spans.with_particle("부산항", "로 갔는가?") == "으로 갔는가?"
    assert spans.with_particle("고수", "이다") == "다" and spans.with_particle("IP68", "를 받았나?") == "를 받았나?"
    assert spans.with_particle("고수", "이라 하는가?") == "라 하는가?" and spans.with_particle("장구", "이라고 부르는가?") == "라고 부르는가?"
    assert spans.with_particle("북", "라고 부르는가?") == "이라고 부르는가?" and spans.with_particle("북", "가 있는가?") == "이 있는가?"
    assert spans.statement_prompt(["가.", "나."], "X는") == "가.\n나.\n\nX는"


@pytest.mark.parametrize("pmi_weight,lm_weight,statement,statement_mean", [(0.0, 0.35, 0.0, 0.0), (0.5, 0.35, 0.0, 0.0),
                                                                           (0.0, 0.0, 0.3, 1.2), (0.5, 0.35, 0.3, 1.2)])
def test_extract_picks_the_best_scored_candidate(tiny_cfg, generator, pmi_weight: float, lm_weight: float,
                                                 statement: float, statement_mean: float) -> None:
    """The winner is the candidate with the highest score, recomputed here from the generator's own scores (pmi,
    weighted), each candidate's statement scored alone, and the features' weighted sum; with pmi weight 0 (no
    no-passage pass) and with a share subtracted, without the cloze pass (its weight 0) and with every part."""
    from krqa.qa.choice import normalise

    answerer = _answerer(tiny_cfg, generator, _Fixed(PASSAGE), sa_mode="extract", sa_max_candidates=5, sa_pmi_weight=pmi_weight,
                         sa_lm_weight=lm_weight, sa_statement_weight=statement, sa_statement_mean_weight=statement_mean)
    res = answerer.answer_items([ITEM], rag=True)[0]
    cands = res.span["candidates"]
    prompt = answerer.builder.build_prompt(ITEM, [_Fixed(PASSAGE).hit]).text
    reference = answerer.builder.build_prompt(ITEM, []).text
    with_p, without = generator.score_options([prompt, reference], [cands, cands], stop=True)
    final = normalise([s.logprob for s in with_p], [s.n_tokens for s in with_p], [s.n_chars for s in with_p], "pmi",
                      [s.logprob for s in without], pmi_weight)
    # features are measured among all the passage's candidates (nesting counts the pruned ones too)
    found = spans.passage_candidates([PASSAGE])
    by_text = dict(zip([c.text for c in found], spans.candidate_features(found, [PASSAGE], ITEM.stem), strict=True))
    final = lm_weight * final + np.array([spans.feature_score(by_text[t], tiny_cfg.generation.sa_feature_weights) for t in cands])
    prefix, rest = spans.statement_parts(ITEM.stem)
    assert prefix == "판소리에서 북을 치며 장단을 맞추는 사람을" and rest == "이라 하는가?"
    for n, text in enumerate(cands):
        [[alone]] = generator.score_options([spans.statement_prompt([PASSAGE], prefix)], [[spans.statement_continuation(text, prefix, rest)]])
        final[n] += statement * alone.logprob + statement_mean * alone.logprob / alone.n_tokens
    assert res.answer == cands[int(np.argmax(final))]
    assert res.span["score"] == pytest.approx(float(final.max()), abs=1e-3)


def test_an_adapter_turns_the_cloze_pass_on_at_its_own_weight(tiny_cfg, tmp_path) -> None:
    """Stage 2 learnt the 단답형 prompt: while its adapter is on, the cloze pass is weighed by sa_adapter_lm_weight
    (the same scores as sa_lm_weight at that value); without an adapter, or with the request turning it off,
    sa_lm_weight holds (0 here: no cloze pass)."""
    from peft import LoraConfig, get_peft_model

    from krqa.generation import lm
    from krqa.generation.base import Decoding
    from krqa.generation.factory import make_generator

    model = get_peft_model(lm.load_model(tiny_cfg.model, for_training=True),
                           LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM", init_lora_weights=False))
    model.save_pretrained(str(tmp_path / "adapter"))
    tuned = make_generator(tiny_cfg.model, tiny_cfg.generation, adapter=str(tmp_path / "adapter"))
    plain = make_generator(tiny_cfg.model, tiny_cfg.generation, adapter="")  # as predict and ablate pass "no adapter"

    def score(generator, lm_weight: float, adapter_weight: float | None, decoding: Decoding = Decoding()) -> float:
        answerer = _answerer(tiny_cfg, generator, _Fixed(PASSAGE), sa_mode="extract", sa_max_candidates=5, sa_lm_weight=lm_weight,
                             sa_adapter_lm_weight=adapter_weight)
        return answerer.answer_items([ITEM], rag=True, decoding=decoding)[0].span["score"]

    assert score(tuned, 0.0, 2.0) == score(tuned, 2.0, None) != score(tuned, 0.0, None)
    assert score(tuned, 0.0, 2.0, Decoding(use_adapter=False)) == score(plain, 0.0, 2.0) == score(plain, 0.0, None) != score(plain, 2.0, None)


def test_fallbacks_no_passage_and_floor(tiny_cfg, generator) -> None:
    no_rag = _answerer(tiny_cfg, generator, _Fixed(PASSAGE), sa_mode="extract").answer_items([ITEM], rag=False)[0]
    assert no_rag.method == "extract-fallback" and no_rag.problem == "no passage" and no_rag.span is None
    floor = _answerer(tiny_cfg, generator, _Fixed(PASSAGE), sa_mode="extract", sa_min_score=1e9).answer_items([ITEM], rag=True)[0]
    assert floor.method == "extract-fallback" and floor.problem == "no candidate above the floor"
    empty = _answerer(tiny_cfg, generator, _Fixed("... !!! ..."), sa_mode="extract").answer_items([ITEM], rag=True)[0]
    assert empty.method == "extract-fallback"
    plain = _answerer(tiny_cfg, generator, _Fixed(PASSAGE), sa_mode="generate").answer_items([ITEM], rag=True)[0]
    assert plain.method == "generate" and plain.span is None


def test_hybrid_puts_the_generated_answer_among_the_candidates(tiny_cfg, generator) -> None:
    greedy = _answerer(tiny_cfg, generator, _Fixed(PASSAGE), sa_mode="generate").answer_items([ITEM], rag=True)[0]
    res = _answerer(tiny_cfg, generator, _Fixed(PASSAGE), sa_mode="hybrid", sa_max_candidates=4).answer_items([ITEM], rag=True)[0]
    assert res.method == "extract" and res.new_tokens == greedy.new_tokens
    first = res.span["candidates"][0]
    snapped = spans.snap(greedy.answer, spans.passage_candidates([PASSAGE]), tiny_cfg.generation.sa_snap_ratio)
    assert first == (snapped.text if snapped is not None else spans.normalise_space(greedy.answer))
    floor = _answerer(tiny_cfg, generator, _Fixed(PASSAGE), sa_mode="hybrid", sa_min_score=1e9).answer_items([ITEM], rag=True)[0]
    assert floor.method == "extract-fallback" and floor.answer == greedy.answer


# ---- training target, recall, predict's summary, the service ------------------------------------------------------


def test_stage2_trains_on_the_span_form() -> None:
    from krqa.training.external import Passage, SourceItem
    from krqa.training.sft import stage_examples

    item = QAItem("sa-2", "독해", "KorQuAD", "단답형", "", "전대협을 이끈 날은?", answer="1989년2월15일#1989.2.15")
    src = SourceItem(item, "test", [Passage("임종석", PASSAGE)])
    assert [e.target for e in stage_examples([src], "each", sa_spans=True)] == ["1989년 2월 15일"]
    assert [e.target for e in stage_examples([src], "each")] == ["1989년2월15일", "1989.2.15"]
    elsewhere = SourceItem(item, "test", [Passage("다른 글", "관계없는 문장이다.")])
    assert [e.target for e in stage_examples([elsewhere], "first", sa_spans=True)] == ["1989년2월15일"]


def test_span_recall_from_predict_details(tmp_path) -> None:
    import json

    from krqa.ablation import span_recall

    items = [QAItem("a", "", "", "단답형", "", "q1", answer="고수#북잡이"), QAItem("b", "", "", "단답형", "", "q2", answer="임종석"),
             QAItem("c", "", "", "단답형", "", "q3", answer="장단")]
    records = [{"id": "a", "span": {"candidates": ["판소리", "북잡이"]}}, {"id": "b", "span": {"candidates": ["임종", "전대협"]}},
               {"id": "c", "method": "extract-fallback"}]
    details = tmp_path / "pred.json.details.jsonl"
    details.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records), encoding="utf-8")
    assert span_recall(items, details) == [1.0, 0.0, 0.0]
    details.write_text(json.dumps({"id": "a", "method": "generate"}), encoding="utf-8")
    assert span_recall(items[:1], details) is None


def test_predict_counts_span_fallbacks(tiny_config, repo, tmp_path) -> None:
    from krqa.qa.data import load_items, save_items
    from krqa.wiring import run_predict

    short = [i for i in load_items(repo / "corpus" / "sample_qa.json") if i.question_type == "단답형"][:3]
    save_items(short, tmp_path / "short.json")
    cfg = tiny_config("predict.rag=false", "generation.sa_mode=extract")
    report = run_predict(cfg, tmp_path / "short.json", tmp_path / "pred.json", adapter="")
    assert report["span_fallbacks"] == {"no passage": 3} and report["by_method"] == {"extract-fallback": 3}


@pytest.mark.slow
def test_service_reports_the_span_and_option_probabilities(repo, tiny_bm25_index) -> None:
    from tests.test_serve import MC_BODY, serving, tiny_config as serve_config

    from krqa.serving.engine import load_engine

    cfg = serve_config(repo, tiny_bm25_index, "generation.sa_mode=extract", "retrieval.min_score=null")
    with serving(cfg, load_engine) as client:
        out = client.post("/answer", json={"question": "훈민정음을 만든 왕은?", "question_type": "단답형", "topic_keyword": "훈민정음"}).json()
        assert out["span"]["text"] == out["answer"] and 0 < out["span"]["prob"] <= 1 and out["span"]["candidates"] >= 1
        assert out["option_probs"] is None
        mc = client.post("/answer", json=MC_BODY).json()
        assert len(mc["option_probs"]) == 4 and mc["span"] is None
        chat = client.post("/v1/chat/completions", json={"model": "tiny-random", "question_type": "단답형",
                                                          "messages": [{"role": "user", "content": "훈민정음을 만든 왕은?"}]}).json()
        assert chat["span"]["text"] == chat["choices"][0]["message"]["content"]

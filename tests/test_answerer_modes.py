"""The Answerer's 선다형 option scoring, retrieval gating per type and score floor, and the 서술형 prose check."""

from __future__ import annotations

from pathlib import Path

import pytest

from krqa.generation.answerer import gate
from krqa.wiring import make_answerer
from krqa.qa.answers import desc_problem
from krqa.qa.data import QAItem, load_items


@pytest.fixture(scope="module")
def generator(tiny_cfg):
    from krqa.generation.factory import make_generator

    return make_generator(tiny_cfg.model, tiny_cfg.generation)


@pytest.fixture(scope="module")
def items(repo: Path) -> list[QAItem]:
    return load_items(repo / "corpus" / "sample_qa.json")


@pytest.fixture(scope="module")
def retriever(tiny_cfg, tiny_bm25_index: Path):
    from krqa.wiring import open_index

    cfg = tiny_cfg.model_copy(update={"retrieval": tiny_cfg.retrieval.model_copy(update={"mode": "bm25"})})
    return open_index(cfg, tiny_bm25_index)


def _with(cfg, **sections):
    """``cfg`` with fields of its sections replaced: _with(cfg, generation={"mc_mode": "score"})."""
    return cfg.model_copy(update={name: getattr(cfg, name).model_copy(update=fields) for name, fields in sections.items()})


def test_mc_scoring_matches_the_generator_scores(tiny_cfg, generator, items: list[QAItem]) -> None:
    """The chosen option is the argmax of the per-token mean log-likelihood of the option texts after the prompt."""
    cfg = _with(tiny_cfg, generation={"mc_mode": "score", "mc_target": "text", "mc_normalization": "mean"})
    answerer = make_answerer(cfg, None, generator)
    mc = [i for i in items if i.question_type == "선다형"][:6]
    results = answerer.answer_items(mc, rag=False)
    for item, res in zip(mc, results, strict=True):
        assert res.method == "score" and len(res.option_probs) == len(item.options)
        prompt = answerer.builder.build_prompt(item, []).text
        scores = generator.score_options([prompt], [list(item.options)])[0]
        means = [s.logprob / s.n_tokens for s in scores]
        assert res.answer == str(means.index(max(means)) + 1)
        assert sum(res.option_probs) == pytest.approx(1.0, abs=1e-3)


def test_permutations_and_calibration_give_valid_options(tiny_cfg, generator, items: list[QAItem]) -> None:
    mc = [i for i in items if i.question_type == "선다형"][:4]
    for gen in ({"mc_target": "text", "mc_permutations": 4}, {"mc_normalization": "calibrated"}, {"mc_target": "number"}, {"mc_target": "cloze"}):
        res = make_answerer(_with(tiny_cfg, generation={"mc_mode": "score", **gen}), None, generator).answer_items(mc, rag=False)
        assert all(r.method == "score" and r.answer in {str(n) for n in range(1, len(i.options) + 1)} for i, r in zip(mc, res))


def test_five_options(tiny_cfg, generator) -> None:
    item = QAItem("five", "문화 지식", "역사", "선다형", "한글", "한글을 만든 왕은?\\n 1\\t태조 2\\t태종 3\\t세종 4\\t세조 5\\t성종", answer="3")
    assert len(item.options) == 5
    for target in ("cloze", "text", "number"):
        res = make_answerer(_with(tiny_cfg, generation={"mc_target": target, "mc_permutations": 5}), None, generator).answer_items([item], rag=False)[0]
        assert res.answer in {"1", "2", "3", "4", "5"} and len(res.option_probs) == 5


def test_cloze_scores_one_order_and_listed_scores_every_order(tiny_cfg, generator, items: list[QAItem]) -> None:
    mc = [i for i in items if i.question_type == "선다형"][:2]

    class Counting:
        def __init__(self, inner) -> None:
            self.inner, self.tokenizer, self.prompts = inner, inner.tokenizer, []

        def score_options(self, prompts, continuations, decoding=None, stop=False):
            self.prompts += prompts
            return self.inner.score_options(prompts, continuations, stop=stop)

    for target, orders in (("cloze", 1), ("text", 4)):
        counting = Counting(generator)
        make_answerer(_with(tiny_cfg, generation={"mc_target": target, "mc_permutations": 4}), None, counting).answer_items(mc, rag=False)
        assert len(counting.prompts) == orders * len(mc)
        assert all(("[보기]" in p) == (target != "cloze") for p in counting.prompts)


def test_unparseable_options_fall_back_to_generation(tiny_cfg, generator, repo: Path, tmp_path: Path) -> None:
    import json

    raw = json.loads((repo / "corpus" / "sample_qa.json").read_text(encoding="utf-8"))
    broken = next(r for r in raw if r["input"]["question_type"] == "선다형")
    broken["input"]["question"] = "보기가 없는 선다형 질문은?"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps([broken], ensure_ascii=False), encoding="utf-8")
    from krqa.qa.data import QAFormatError

    with pytest.raises(QAFormatError, match=f"item '{broken['id']}'.*options"):
        load_items(path)
    item = load_items(path, strict_options=False)[0]
    res = make_answerer(_with(tiny_cfg, generation={"mc_mode": "score"}), None, generator).answer_items([item], rag=False)[0]
    assert res.method == "generate-fallback" and res.answer.isdigit()


def test_score_floor_drops_low_passages(tiny_cfg, generator, retriever, items: list[QAItem]) -> None:
    # generated answers show every kept passage (span extraction and option scoring show only the best ones)
    picked = [i for i in items if i.question_type != "선다형"][:6]
    generate = {"sa_mode": "generate"}
    everything = make_answerer(_with(tiny_cfg, retrieval={"mode": "bm25"}, generation=generate), retriever, generator).answer_items(picked, rag=True, top_k=3)
    scores = sorted(h.score for r in everything for h in r.contexts)
    floor = scores[len(scores) // 2]
    gated = make_answerer(_with(tiny_cfg, retrieval={"mode": "bm25", "min_score": floor}, generation=generate), retriever,
                          generator).answer_items(picked, rag=True, top_k=3)
    assert sum(r.contexts_below_floor for r in gated) > 0
    for full, res in zip(everything, gated, strict=True):
        assert all(h.score >= floor for h in res.contexts)
        assert len(res.contexts) + res.contexts_below_floor == len(full.contexts) == res.contexts_retrieved
    kept, dropped = gate(everything[0].contexts, None)
    assert dropped == 0 and len(kept) == len(everything[0].contexts)


def test_pmi_subtracts_the_no_passage_scores(tiny_cfg, generator, retriever, items: list[QAItem]) -> None:
    """With passages: sum log p(option | passage, question) - w * sum log p(option | question), best passage only."""
    cfg = _with(tiny_cfg, retrieval={"mode": "bm25"}, generation={"mc_normalization": "pmi", "mc_pmi_weight": 0.5, "mc_max_passages": 1})
    answerer = make_answerer(cfg, retriever, generator)
    mc = [i for i in items if i.question_type == "선다형"][:4]
    results = answerer.answer_items(mc, rag=True, top_k=3)
    for item, res in zip(mc, results, strict=True):
        assert len(res.contexts) == 1 and res.contexts_retrieved == 3
        with_ctx = generator.score_options([answerer.builder.build_prompt(item, res.contexts).text], [list(item.options)])[0]
        without = generator.score_options([answerer.builder.build_prompt(item, []).text], [list(item.options)])[0]
        expected = [a.logprob - 0.5 * b.logprob for a, b in zip(with_ctx, without)]
        assert res.answer == str(expected.index(max(expected)) + 1)
    no_rag = answerer.answer_items(mc, rag=False)
    for item, res in zip(mc, no_rag, strict=True):  # no passages: a plain sum
        plain = generator.score_options([answerer.builder.build_prompt(item, []).text], [list(item.options)])[0]
        sums = [s.logprob for s in plain]
        assert res.answer == str(sums.index(max(sums)) + 1)


def test_rag_types_turn_retrieval_off_per_type(tiny_cfg, generator, retriever, items: list[QAItem]) -> None:
    cfg = _with(tiny_cfg, retrieval={"mode": "bm25"}, predict={"rag_types": ["단답형"]})
    results = make_answerer(cfg, retriever, generator).answer_items(items, rag=True, top_k=2)
    for item, res in zip(items, results, strict=True):
        assert res.rag == (item.question_type == "단답형")
        assert bool(res.contexts) == res.rag == (res.contexts_retrieved > 0)


@pytest.mark.parametrize("text, problem", [
    ("설날 > 풍습 > 음식 설날 > 차례와 성묘", "section path"),
    ("[참고 문서] 설날은 음력 정월 초하루로 차례를 지낸다.", "prompt markup"),
    ("당신은 한국의 문화, 역사, 지리, 사회, 예술에 정통한 전문가", "copies the instruction"),
    ("설날 풍습과 음식 차례 성묘 세배 떡국 윷놀이", "heading-like (no sentence)"),
    ("설날", "too short"),
    ("설날은 음력 1월 1일로, 차례를 지내고 세배를 하며 떡국을 먹는 명절이다.", None),
])
def test_desc_problem(text: str, problem: str | None) -> None:
    from krqa.qa.config import DEFAULT_SYSTEM

    assert desc_problem(text, [DEFAULT_SYSTEM]) == problem


class _Scripted:
    """A generator double whose greedy answer copies a section path and whose sampled answers are listed."""

    def __init__(self, tokenizer, sampled: list[str]) -> None:
        self.tokenizer = tokenizer
        self.sampled = sampled
        self.seeds: list[int | None] = []

    def generate_timed(self, prompts: list[str], question_types: list[str], sample_seed: int | None = None, **_: object) -> list:
        from krqa.generation.base import Generation

        self.seeds.append(sample_seed)
        seeds = sorted({s for s in self.seeds if s is not None})
        text = "설날 > 풍습과 놀이 > 차례와 성묘 > 음식" if sample_seed is None else self.sampled[seeds.index(sample_seed)]
        return [Generation(text, 1.0, 5, len(prompts)) for _ in prompts]


def test_descriptive_candidates_replace_non_prose(tiny_cfg, tiny_tokenizer, items: list[QAItem]) -> None:
    desc = [i for i in items if i.question_type == "서술형"][:2]
    prose = "설날은 음력 정월 초하루로, 차례를 지내고 세배를 하며 떡국을 먹는 명절이다."
    scripted = _Scripted(tiny_tokenizer, ["설날 풍습 음식 차례", prose])
    res = make_answerer(_with(tiny_cfg, generation={"desc_candidates": 3, "seed": 7}), None, scripted).answer_items(desc, rag=False)
    assert scripted.seeds == [None, 8, 8, 9, 9]  # greedy for both, then two seeded samples, one prompt per call
    assert all(r.answer == prose and r.method == "generate-candidate-3" and r.problem is None for r in res)
    assert all(r.timings_ms["generate"] == 3.0 for r in res)
    stuck = _Scripted(tiny_tokenizer, ["설날 > 풍습 > 차례와 성묘 > 음식"])
    res = make_answerer(_with(tiny_cfg, generation={"desc_candidates": 2}), None, stuck).answer_items(desc[:1], rag=False)
    assert res[0].problem == "section path" and res[0].method == "generate"


def test_descriptive_check_on_the_tiny_model(tiny_cfg, generator, items: list[QAItem]) -> None:
    desc = [i for i in items if i.question_type == "서술형"][:3]
    one = make_answerer(_with(tiny_cfg, generation={"desc_candidates": 1}), None, generator)
    for item, res in zip(desc, one.answer_items(desc, rag=False), strict=True):
        assert res.problem == desc_problem(res.answer, [one.builder.system, one.builder.instruction(item)])


def test_an_abandoned_item_gets_no_descriptive_candidates(tiny_cfg, tiny_tokenizer, items: list[QAItem]) -> None:
    """Before: a streamed 서술형 answer cut by its client's disconnect was judged not prose and up to
    desc_candidates - 1 new candidates were sampled for nobody on the one generation thread (the next /answer
    waited 38.7 s instead of 0.26 s). The same holds for a request that timed out (its sink is a CallOff)."""
    from krqa.generation.base import CallOff

    desc = [i for i in items if i.question_type == "서술형"][:2]
    scripted = _Scripted(tiny_tokenizer, ["설날 풍습 음식 차례", "설날은 음력 정월 초하루로, 차례를 지내고 떡국을 먹는 명절이다."])
    gone, waiting = CallOff(), CallOff()
    gone.close()
    res = make_answerer(_with(tiny_cfg, generation={"desc_candidates": 3, "seed": 7}), None, scripted).answer_items(
        desc, rag=False, sinks=[gone, waiting])
    assert scripted.seeds == [None, 8, 9]  # one greedy call for both, then candidates for the waiting item only
    assert res[0].method == "generate" and res[0].problem == "section path"
    assert res[1].method == "generate-candidate-3"


def test_a_called_off_row_stops_generating(generator) -> None:
    from krqa.generation.base import CallOff, Decoding

    prompt = "설날에 대해 설명하시오."
    full = generator.generate_timed([prompt], ["서술형"], decoding=Decoding(max_new_tokens=24))[0]
    off = CallOff()
    off.close()
    cut = generator.generate_timed([prompt], ["서술형"], decoding=Decoding(max_new_tokens=24), sinks=[off])[0]
    assert full.new_tokens > 2 and cut.new_tokens <= 1, (full.new_tokens, cut.new_tokens)


def test_stop_strings_end_the_answer(generator) -> None:
    from krqa.generation.base import Decoding

    prompt = "설날에 대해 설명하시오."
    full = generator.generate_timed([prompt], ["서술형"], decoding=Decoding(max_new_tokens=24))[0]
    assert len(full.text) > 4
    stop = full.text[2:4]
    cut = generator.generate_timed([prompt], ["서술형"], decoding=Decoding(max_new_tokens=24, stop=(stop,)))[0]
    assert cut.text == full.text[: full.text.find(stop)].strip()

"""Streaming a batched generate call row by row, stopping abandoned rows, and per-request decoding changes."""

from __future__ import annotations

import asyncio

import pytest

from krqa.generation.base import Decoding
from krqa.generation.factory import make_generator

PROMPTS = ["질문: 설날의 풍습을 서술하세요.\n답변:", "질문: 훈민정음을 만든 왕은?\n답변:", "질문: 추석에 먹는 떡을 설명하세요.\n답변:"]
TYPES = ["서술형", "단답형", "서술형"]


class Recording:
    """A sink that remembers every text it was shown and closes itself after ``close_after`` updates."""

    def __init__(self, close_after: int | None = None) -> None:
        self.texts: list[str] = []
        self.close_after = close_after

    @property
    def closed(self) -> bool:
        return self.close_after is not None and len(self.texts) >= self.close_after

    def update(self, text: str) -> None:
        self.texts.append(text)


@pytest.fixture(scope="module")
def generator(tiny_cfg):
    return make_generator(tiny_cfg.model, tiny_cfg.generation.model_copy(update={"desc_min_new_tokens": 16, "repetition_penalty": 1.0}))


def test_streamed_rows_grow_to_the_final_text_and_change_nothing(generator) -> None:
    plain = generator.generate_timed(PROMPTS, TYPES)
    sinks = [Recording(), None, Recording()]
    streamed = generator.generate_timed(PROMPTS, TYPES, sinks=sinks)
    assert [g.text for g in streamed] == [g.text for g in plain]
    for sink, gen in ((sinks[0], streamed[0]), (sinks[2], streamed[2])):
        assert len(sink.texts) >= 4, sink.texts  # at least 16 tokens, shown as they came
        assert all(b.startswith(a) for a, b in zip(sink.texts, sink.texts[1:]))
        assert sink.texts[-1].strip() == gen.text
        assert not any(t.endswith("\ufffd") for t in sink.texts)  # half a syllable is held back


def test_a_closed_sink_stops_its_row_only(generator) -> None:
    full = generator.generate_timed(PROMPTS, TYPES)
    sinks = [Recording(close_after=2), None, Recording()]
    out = generator.generate_timed(PROMPTS, TYPES, sinks=sinks)
    assert full[0].new_tokens >= 16 and out[0].new_tokens <= 4, (full[0].new_tokens, out[0].new_tokens)
    assert out[2].text == full[2].text and out[1].text == full[1].text


def test_every_row_closed_ends_the_call_early(generator) -> None:
    sinks = [Recording(close_after=1), Recording(close_after=1)]
    out = generator.generate_timed(PROMPTS[::2], ["서술형", "서술형"], sinks=sinks)
    assert all(g.new_tokens <= 3 for g in out), [g.new_tokens for g in out]


def test_decoding_overrides(generator) -> None:
    base = generator.generate_timed(PROMPTS[:1], ["서술형"])[0]
    capped = generator.generate_timed(PROMPTS[:1], ["서술형"], decoding=Decoding(max_new_tokens=5))[0]
    assert capped.new_tokens <= 5 < base.new_tokens
    assert generator.max_new_tokens("서술형", Decoding(max_new_tokens=10_000)) == generator.max_new_tokens("서술형")
    assert generator.generate_timed(PROMPTS[:1], ["서술형"], decoding=Decoding(temperature=0.0))[0].text == base.text
    assert generator.sampling(None, Decoding(temperature=1.3)) == (True, 1.3)
    assert generator.sampling(None, Decoding()) == (False, generator.gen_cfg.temperature)
    assert generator.sampling(4, Decoding(temperature=0.0)) == (True, generator.gen_cfg.temperature)


def test_base_model_without_the_adapter(tiny_cfg, tmp_path) -> None:
    """``use_adapter=False`` answers with the base weights: the same text as a generator without the adapter."""
    import torch
    from peft import LoraConfig, get_peft_model

    from krqa.generation import lm

    model = lm.load_model(tiny_cfg.model, for_training=True)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM", init_lora_weights=False))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.add_(1.0)
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    plain = make_generator(tiny_cfg.model, tiny_cfg.generation)
    tuned = make_generator(tiny_cfg.model, tiny_cfg.generation, adapter=str(tmp_path / "adapter"))
    prompt, qtype = PROMPTS[1:2], ["단답형"]
    assert tuned.generate_timed(prompt, qtype)[0].text != plain.generate_timed(prompt, qtype)[0].text
    assert tuned.generate_timed(prompt, qtype, decoding=Decoding(use_adapter=False))[0].text == plain.generate_timed(prompt, qtype)[0].text
    scores = tuned.score_options(prompt, [["세종", "태조"]], Decoding(use_adapter=False))
    assert scores == plain.score_options(prompt, [["세종", "태조"]])


def test_vllm_streaming_backend_needs_vllm(tiny_cfg) -> None:
    from krqa.errors import InputError

    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="vllm is not installed"):
            make_generator(tiny_cfg.model, tiny_cfg.generation.model_copy(update={"backend": "vllm"}), streaming=True)
    else:
        pytest.skip("vllm is installed; it needs a CUDA GPU, which the CPU suite does not use")


class FakeAsyncEngine:
    """vLLM's AsyncLLMEngine as the async generator sees it: cumulative outputs per step, ``abort`` by id."""

    def __init__(self, words: list[str]) -> None:
        self.words = words
        self.aborted: list[str] = []

    async def generate(self, request, params, request_id, lora_request=None):
        from types import SimpleNamespace

        for n in range(1, len(self.words) + 1):
            await asyncio.sleep(0)
            if request_id in self.aborted:
                return
            text = " ".join(self.words[:n])
            yield SimpleNamespace(outputs=[SimpleNamespace(text=text, token_ids=list(range(n)))])

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)


def test_async_vllm_run_streams_and_aborts_closed_requests() -> None:
    """The orchestration around vLLM's async engine (the engine itself needs a GPU): every request of a call
    runs at once, sinks see the text grow, a closed sink aborts its request and the others finish."""
    import threading

    from krqa.generation.vllm_backend import AsyncVllmGenerator

    gen = object.__new__(AsyncVllmGenerator)
    gen.loop = asyncio.new_event_loop()
    threading.Thread(target=gen.loop.run_forever, daemon=True).start()
    gen.engine = FakeAsyncEngine(["설날은", "음력", "정월", "초하루이다."])
    try:
        open_sink, leaving = Recording(), Recording(close_after=2)
        out = gen.run([{"prompt_token_ids": [1]}, {"prompt_token_ids": [2]}, {"prompt_token_ids": [3]}], None, None, [open_sink, leaving, None])
    finally:
        gen.loop.call_soon_threadsafe(gen.loop.stop)
    assert open_sink.texts == ["설날은", "설날은 음력", "설날은 음력 정월", "설날은 음력 정월 초하루이다."]
    assert out[0].outputs[0].text == out[2].outputs[0].text == "설날은 음력 정월 초하루이다."
    assert len(gen.engine.aborted) == 1 and out[1].outputs[0].text == "설날은 음력 정월"


def test_answer_so_far_never_shows_a_prompt_marker_being_written(tiny_cfg) -> None:
    """A base model that starts another prompt turn ('[질문]') has its answer cut there; while the marker is being
    written, the half-marker is held back instead of shown and then taken back."""
    from krqa.generation.answerer import _Answering
    from krqa.qa.answers import postprocess
    from krqa.qa.data import QAItem

    item = QAItem(id="d1", category="", domain="", question_type="서술형", topic_keyword="설날", question="설날의 풍습을 설명하시오.")
    answer = "설날에는 차례를 지내고 세배를 한다."
    sink = Recording()
    shown = _Answering(item, tiny_cfg.generation.desc_max_chars, sink)
    raws = [answer[:4], answer, answer + " [", answer + " [질", answer + " [질문", answer + " [질문] 추석에는", answer + " [참고 문서가 아닌 긴 괄호"]
    for raw in raws:
        shown.update(raw)
    assert all("[질" not in text for text in sink.texts[:-1])
    assert sink.texts[:5] == [answer[:4], answer, answer, answer, answer]
    assert sink.texts[5] == postprocess(item, raws[5], tiny_cfg.generation.desc_max_chars) == answer
    assert sink.texts[-1].endswith("[참고 문서가 아닌 긴 괄호")  # too long for a marker: shown as written

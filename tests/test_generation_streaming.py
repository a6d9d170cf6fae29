"""Streaming a batched generate call row by row, stopping abandoned rows, and per-request decoding changes."""

from __future__ import annotations

import pytest

from krqa.generation.generator import Decoding, make_generator

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
    cfg = tiny_cfg.model_copy(update={"generation": tiny_cfg.generation.model_copy(update={"desc_min_new_tokens": 16, "repetition_penalty": 1.0})})
    return make_generator(cfg)


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

    from krqa.generation import models

    model = models.load_model(tiny_cfg.model, for_training=True)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM", init_lora_weights=False))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.add_(1.0)
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    plain = make_generator(tiny_cfg)
    tuned = make_generator(tiny_cfg, adapter=str(tmp_path / "adapter"))
    prompt, qtype = PROMPTS[1:2], ["단답형"]
    assert tuned.generate_timed(prompt, qtype)[0].text != plain.generate_timed(prompt, qtype)[0].text
    assert tuned.generate_timed(prompt, qtype, decoding=Decoding(use_adapter=False))[0].text == plain.generate_timed(prompt, qtype)[0].text
    scores = tuned.score_options(prompt, [["세종", "태조"]], Decoding(use_adapter=False))
    assert scores == plain.score_options(prompt, [["세종", "태조"]])

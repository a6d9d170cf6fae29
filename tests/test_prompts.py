"""Prompt builder: layout, chat vs plain template, token budget, and the prompt-is-a-token-prefix guarantee."""

from __future__ import annotations

from pathlib import Path

import pytest

from krqa.errors import InputError
from krqa.generation.config import ModelConfig
from krqa.qa.config import PromptConfig
from krqa.qa.data import QAItem, load_items
from krqa.qa.prompts import PromptBuilder
from krqa.training.external import Passage


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from krqa.generation.lm import load_tokenizer

    return load_tokenizer(ModelConfig(cache_dir=str(tmp_path_factory.getbasetemp() / "models")))


@pytest.fixture()
def chat_tokenizer(tokenizer):
    import copy

    from krqa.model_location import GEMMA_CHAT_TEMPLATE

    tok = copy.deepcopy(tokenizer)
    tok.chat_template = GEMMA_CHAT_TEMPLATE
    return tok


@pytest.fixture(scope="module")
def items(repo: Path) -> list[QAItem]:
    return load_items(repo / "corpus" / "sample_qa.json")


def _mc(items: list[QAItem]) -> QAItem:
    return next(i for i in items if i.question_type == "선다형")


def _passages(n: int, chars: int = 250) -> list[Passage]:
    return [Passage(f"문서{i}", (f"{i}번 문서의 내용입니다. 한국의 명절과 풍습을 설명합니다. " * 20)[:chars], "역사 > 기원") for i in range(1, n + 1)]


def test_plain_layout(tokenizer, items: list[QAItem]) -> None:
    assert not tokenizer.chat_template
    item = _mc(items)
    cfg = PromptConfig()
    text = PromptBuilder(cfg, tokenizer).build(item, None)
    assert text.startswith(cfg.system) and text.endswith(f"\n\n{cfg.answer_header}\n")
    assert cfg.instructions["선다형"] in text and f"주제어: {item.topic_keyword}" in text
    assert cfg.context_header not in text
    for n, opt in enumerate(item.options, 1):
        assert f"\n{n}. {opt}\n" in text
    assert "\\t" not in text and "\t" not in text and item.stem in text
    with_ctx = PromptBuilder(cfg, tokenizer).build(item, _passages(2))
    assert f"{cfg.context_header}\n[1] 문서1\n" in with_ctx and "\n\n[2] 문서2\n" in with_ctx
    assert " > " not in with_ctx  # no section path for a small model to copy into its answer
    assert with_ctx.index(cfg.context_header) < with_ctx.index(cfg.question_header)
    with_sections = PromptBuilder(cfg.model_copy(update={"passage_sections": True}), tokenizer).build(item, _passages(2))
    assert f"{cfg.context_header}\n[1] 문서1 > 역사 > 기원\n" in with_sections


def test_mc_text_target_and_reordered_options(tokenizer, items: list[QAItem]) -> None:
    item = _mc(items)
    cfg = PromptConfig()
    text = PromptBuilder(cfg, tokenizer, mc_target="text").build_prompt(item, None, options=item.options[::-1]).text
    assert cfg.mc_text_instruction in text and cfg.instructions["선다형"] not in text
    for n, opt in enumerate(item.options[::-1], 1):
        assert f"\n{n}. {opt}\n" in text
    free = PromptBuilder(cfg, tokenizer, mc_target="text").content_free(item, item.options)
    assert item.stem not in free and all(opt in free for opt in item.options)


def test_mc_cloze_prompt_hides_the_options(tokenizer, items: list[QAItem]) -> None:
    """Listing the options lets a small model copy from the list instead of answering (on held-out KorQuAD items
    with the right passage, Gemma-3-270m scored 0.30 with the list and 0.72 without it)."""
    item = _mc(items)
    cfg = PromptConfig()
    text = PromptBuilder(cfg, tokenizer, mc_target="cloze").build(item, None)
    assert cfg.options_header not in text and item.stem in text
    assert not any(f"{n}. {opt}" in text for n, opt in enumerate(item.options, 1))
    assert cfg.instructions["단답형"] in text


def test_instruction_per_type(tokenizer, items: list[QAItem]) -> None:
    builder = PromptBuilder(PromptConfig(), tokenizer)
    for qtype in ("선다형", "단답형", "서술형"):
        item = next(i for i in items if i.question_type == qtype)
        text = builder.build(item)
        assert PromptConfig().instructions[qtype] in text
        assert ("[보기]" in text) == (qtype == "선다형")


def test_chat_template(chat_tokenizer, items: list[QAItem]) -> None:
    cfg = PromptConfig()
    text = PromptBuilder(cfg, chat_tokenizer).build(_mc(items))
    assert text.startswith("<start_of_turn>user\n" + cfg.system + "\n\n")  # system folded into the user turn
    assert text.endswith("<end_of_turn>\n<start_of_turn>model\n") and cfg.answer_header not in text
    plain = PromptBuilder(cfg.model_copy(update={"use_chat_template": "no"}), chat_tokenizer).build(_mc(items))
    assert plain.endswith(f"{cfg.answer_header}\n") and "<start_of_turn>" not in plain


def test_chat_template_required_but_missing(tokenizer) -> None:
    with pytest.raises(InputError, match="no chat template"):
        PromptBuilder(PromptConfig(use_chat_template="yes"), tokenizer)


def test_bos_in_template_is_not_doubled(chat_tokenizer, items: list[QAItem]) -> None:
    chat_tokenizer.chat_template = "{{ bos_token }}" + chat_tokenizer.chat_template
    text = PromptBuilder(PromptConfig(), chat_tokenizer).build(_mc(items))
    ids = chat_tokenizer(text)["input_ids"]
    assert ids[0] == chat_tokenizer.bos_token_id and ids[1] != chat_tokenizer.bos_token_id


@pytest.mark.parametrize("chat", [False, True])
def test_training_pair_prompt_is_token_prefix(tokenizer, chat_tokenizer, items: list[QAItem], chat: bool) -> None:
    tok = chat_tokenizer if chat else tokenizer
    builder = PromptBuilder(PromptConfig(max_prompt_tokens=400), tok)
    for item in items:
        for contexts in (None, _passages(3)):
            prompt, answer = builder.build_training_pair(item, contexts, " " + (item.answer or "") + " ")
            assert answer == (item.answer or "").strip() + tok.eos_token
            p_ids = tok(prompt)["input_ids"]
            full = tok(prompt + answer)["input_ids"]
            assert full[: len(p_ids)] == p_ids, item.id
            assert full[-1] == tok.eos_token_id and len(full) > len(p_ids) + 1


def test_budget_drops_passages_from_the_last(tokenizer, items: list[QAItem]) -> None:
    item = _mc(items)
    unlimited = PromptBuilder(PromptConfig(max_prompt_tokens=100_000), tokenizer)
    full = unlimited.build_prompt(item, _passages(4))
    assert full.contexts_used == 4 and not full.truncated
    budget = full.n_tokens - 5
    prompt = PromptBuilder(PromptConfig(max_prompt_tokens=budget), tokenizer).build_prompt(item, _passages(4))
    assert prompt.truncated and prompt.n_tokens <= budget
    assert prompt.n_tokens == len(tokenizer(prompt.text)["input_ids"])
    assert "[1] 문서1" in prompt.text and "[3] 문서3" in prompt.text
    assert prompt.context_chars[:3] == [250, 250, 250]
    if prompt.contexts_used == 4:  # the last one was cut to fit rather than dropped
        assert prompt.context_chars[3] < 250
    assert prompt.text.endswith(unlimited.question_block(item) + "\n\n[답변]\n")


def test_budget_keeps_question_whole(tokenizer, items: list[QAItem]) -> None:
    item = _mc(items)
    no_ctx = PromptBuilder(PromptConfig(max_prompt_tokens=100_000), tokenizer).build_prompt(item)
    tight = PromptBuilder(PromptConfig(max_prompt_tokens=no_ctx.n_tokens + 10), tokenizer).build_prompt(item, _passages(3))
    assert tight.contexts_used == 0 and tight.text == no_ctx.text
    too_small = PromptBuilder(PromptConfig(max_prompt_tokens=64), tokenizer).build_prompt(item, _passages(3))
    assert too_small.text == no_ctx.text and too_small.n_tokens > 64  # never cut the question


def test_a_question_over_the_budget_is_warned_about_with_or_without_passages(tokenizer, caplog: pytest.LogCaptureFixture) -> None:
    item = QAItem(id="long1", category="c", domain="d", question_type="단답형", topic_keyword="k", question="설날의 풍습을 묻는다. " * 800)
    builder = PromptBuilder(PromptConfig(max_prompt_tokens=512), tokenizer)
    for contexts in (None, _passages(3)):
        caplog.clear()
        with caplog.at_level("WARNING", logger="krqa.qa.prompts"):
            prompt = builder.build_prompt(item, contexts)
        assert prompt.n_tokens > 512 and prompt.contexts_used == 0
        assert [r.getMessage() for r in caplog.records] == [
            f"item long1: prompt has {prompt.n_tokens} tokens without passages, over prompt.max_prompt_tokens=512"]


def test_partial_passage_fills_the_room(tokenizer, items: list[QAItem]) -> None:
    item = _mc(items)
    builder = PromptBuilder(PromptConfig(max_prompt_tokens=100_000), tokenizer)
    one = builder.build_prompt(item, _passages(1)).n_tokens
    prompt = PromptBuilder(PromptConfig(max_prompt_tokens=one + 60), tokenizer).build_prompt(item, _passages(2))
    assert prompt.contexts_used == 2 and 0 < prompt.context_chars[1] < 250 and prompt.n_tokens <= one + 60


def test_passage_char_cap(tokenizer, items: list[QAItem]) -> None:
    prompt = PromptBuilder(PromptConfig(max_passage_chars=60, max_prompt_tokens=100_000), tokenizer).build_prompt(_mc(items), _passages(2))
    assert prompt.context_chars == [61, 61] and "…\n" in prompt.text


def test_variants_from_config(tokenizer, items: list[QAItem]) -> None:
    cfg = PromptConfig(variants={"terse": {"system": "짧게 답하라.", "instructions": {"선다형": "번호만."}}}, variant="terse")
    text = PromptBuilder(cfg, tokenizer).build(_mc(items))
    assert text.startswith("짧게 답하라.\n\n번호만.\n\n")
    short = next(i for i in items if i.question_type == "단답형")
    assert PromptConfig().instructions["단답형"] in PromptBuilder(cfg, tokenizer).build(short)
    with pytest.raises(ValueError, match="not defined"):
        PromptConfig(variant="missing")
    with pytest.raises(ValueError, match="unknown question type"):
        PromptConfig(instructions={"객관식": "x"})


def test_hit_dicts_are_accepted(tokenizer, items: list[QAItem]) -> None:
    text = PromptBuilder(PromptConfig(), tokenizer).build(_mc(items), [{"title": "제목", "section": "", "text": "본문"}])
    assert "[1] 제목\n본문" in text

"""Tokenized SFT examples: prompt masking, answer-preserving truncation, padding and packing.

A character-level tokenizer built in the test makes every expected position exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch

from krqa.qa.data import SHORT, QAItem
from krqa.training.data import IGNORE_INDEX, EncodeStats, PadCollator, TrainExample, count_tokens, encode_example, pack
from krqa.training.external import Passage


@pytest.fixture(scope="module")
def char_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789 :?.\n[]가나다라마바사아자차카타파하질문답정문맥"))
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{c: i + 4 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.add_special_tokens(["<pad>", "<s>", "</s>", "<unk>"])
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def build_pair(item: QAItem, contexts: Sequence[Any], answer: str) -> tuple[str, str]:
    ctx = "".join(f"[{c.text}]" for c in contexts)
    return f"{ctx}질문: {item.question}\n답: ", answer + "</s>"


ITEM = QAItem("x1", "c", "d", SHORT, "k", "abc?", answer="가나다")


def test_prompt_tokens_masked_exactly(char_tokenizer: Any) -> None:
    ex = TrainExample("x1", ITEM, "가나다")
    enc = encode_example(build_pair, char_tokenizer, ex, max_len=64)
    prompt = "질문: abc?\n답: "
    n_prompt = 1 + len(prompt)  # BOS + one token per character
    assert enc["input_ids"][:n_prompt] == char_tokenizer(prompt)["input_ids"]
    assert enc["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert enc["labels"][n_prompt:] == enc["input_ids"][n_prompt:]
    assert char_tokenizer.decode(enc["labels"][n_prompt:]) == "가나다</s>"
    assert enc["input_ids"][-1] == char_tokenizer.eos_token_id
    assert enc["attention_mask"] == [1] * len(enc["input_ids"])
    assert count_tokens([enc]) == {"tokens": n_prompt + 4, "answer_tokens": 4}


def test_truncation_drops_contexts_then_cuts_prompt_left(char_tokenizer: Any) -> None:
    ctxs = [Passage("t", "aaaaaaaaaa"), Passage("t", "bbbbbbbbbb"), Passage("t", "cccccccccc")]
    ex = TrainExample("x1", ITEM, "가나다", ctxs)
    stats = EncodeStats()
    full = encode_example(build_pair, char_tokenizer, ex, max_len=200, stats=stats)
    assert stats.contexts_dropped == 0 and "cccccccccc" in char_tokenizer.decode(full["input_ids"])
    # room for BOS + the bare prompt (13) + answer (4) + one context (12) = 29: the last two contexts go
    one = encode_example(build_pair, char_tokenizer, ex, max_len=31, stats=stats)
    text = char_tokenizer.decode(one["input_ids"])
    assert "[aaaaaaaaaa]" in text and "bbb" not in text and stats.contexts_dropped == 2
    assert len(one["input_ids"]) == 29
    # below the bare prompt: no contexts left, the prompt loses its start but keeps BOS; the answer stays whole
    cut = encode_example(build_pair, char_tokenizer, ex, max_len=12, stats=stats)
    assert len(cut["input_ids"]) == 12 and cut["input_ids"][0] == char_tokenizer.bos_token_id
    assert char_tokenizer.decode(cut["input_ids"][1:8]) == "bc?\n답: "
    assert char_tokenizer.decode([t for t in cut["labels"] if t != IGNORE_INDEX]) == "가나다</s>"
    assert stats.prompts_cut == 1 and stats.answers_cut == 0


def test_long_answer_cut_to_half_the_budget(char_tokenizer: Any) -> None:
    long_answer = "가나다라마바사아자차" * 4
    stats = EncodeStats()
    # the whole prompt (13 tokens) fits beside the answer's first 17 tokens
    enc = encode_example(build_pair, char_tokenizer, TrainExample("x1", ITEM, long_answer), max_len=30, stats=stats)
    answer_ids = [t for t in enc["labels"] if t != IGNORE_INDEX]
    assert len(enc["input_ids"]) == 30 and len(answer_ids) == 17 and stats.answers_cut == 1 and stats.prompts_cut == 0
    assert char_tokenizer.decode(answer_ids) == long_answer[:17]
    # a tighter budget splits half and half: the answer keeps 10 tokens, the prompt BOS + its last 9
    enc = encode_example(build_pair, char_tokenizer, TrainExample("x1", ITEM, long_answer), max_len=20, stats=stats)
    answer_ids = [t for t in enc["labels"] if t != IGNORE_INDEX]
    assert len(answer_ids) == 10 and len(enc["input_ids"]) == 20 and stats.prompts_cut == 1


def test_collator_pads_right(char_tokenizer: Any) -> None:
    a = encode_example(build_pair, char_tokenizer, TrainExample("a", ITEM, "가"), max_len=64)
    b = encode_example(build_pair, char_tokenizer, TrainExample("b", ITEM, "가나다라마"), max_len=64)
    batch = PadCollator(pad_token_id=0, pad_to_multiple_of=8)([a, b])
    assert batch["input_ids"].shape == (2, 24) and batch["input_ids"].dtype == torch.long
    n = len(a["input_ids"])
    assert batch["input_ids"][0, :n].tolist() == a["input_ids"] and (batch["input_ids"][0, n:] == 0).all()
    assert (batch["labels"][0, n:] == IGNORE_INDEX).all() and (batch["attention_mask"][0, n:] == 0).all()
    assert batch["attention_mask"][1, : len(b["input_ids"])].all()


def test_packing_restarts_positions(char_tokenizer: Any) -> None:
    encs = [encode_example(build_pair, char_tokenizer, TrainExample(str(i), ITEM, "가" * (i + 1)), max_len=64) for i in range(4)]
    lengths = [len(e["input_ids"]) for e in encs]
    packed = pack(encs, max_len=lengths[0] + lengths[1])
    assert [len(p["input_ids"]) for p in packed] == [lengths[0] + lengths[1], lengths[2], lengths[3]]
    assert packed[0]["position_ids"] == list(range(lengths[0])) + list(range(lengths[1]))
    assert packed[0]["labels"][lengths[0]] == IGNORE_INDEX  # the second example starts with its masked prompt
    assert sum(count_tokens(packed).values()) == sum(count_tokens(encs).values())

"""Tokenized SFT examples: loss on the answer tokens only, truncation that never drops the answer.

The prompt is tokenized on its own, exactly as generation tokenizes it, and the answer tokens are appended; so
the model is trained on the very token sequence it will be conditioned on at inference time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from krqa.qa.data import QAItem

IGNORE_INDEX = -100


@dataclass
class TrainExample:
    """One (question, contexts, target answer) triple before tokenization."""

    id: str
    item: QAItem
    target: str
    contexts: list[Any] = field(default_factory=list)


@dataclass
class EncodeStats:
    """Counts a run records about tokenization."""

    examples: int = 0
    contexts_dropped: int = 0
    prompts_cut: int = 0
    answers_cut: int = 0
    prompt_tokens: int = 0
    answer_tokens: int = 0

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


BuildPair = Callable[[QAItem, Sequence[Any], str], tuple[str, str]]


def _ids(tokenizer: Any, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def encode_example(build_pair: BuildPair, tokenizer: Any, ex: TrainExample, max_len: int, stats: EncodeStats | None = None) -> dict[str, list[int]]:
    """``input_ids``/``labels``/``attention_mask`` with the prompt masked to -100.

    Over ``max_len``: drop contexts from the end (the prompt builder re-fits the rest), then cut the prompt from
    the left keeping a leading BOS, so the question's end and the answer stay. An answer longer than half the
    budget is cut too (it would otherwise leave no room for the question).
    """
    stats = stats if stats is not None else EncodeStats()
    contexts = list(ex.contexts)
    while True:
        prompt, answer = build_pair(ex.item, contexts, ex.target)
        p_ids = _ids(tokenizer, prompt, special=True)
        a_ids = _ids(tokenizer, answer, special=False)
        if len(p_ids) + len(a_ids) <= max_len or not contexts:
            break
        contexts.pop()
        stats.contexts_dropped += 1
    eos = tokenizer.eos_token_id
    if eos is not None and (not a_ids or a_ids[-1] != eos):
        a_ids.append(eos)
    if len(a_ids) > max_len // 2 and len(p_ids) + len(a_ids) > max_len:
        a_ids = a_ids[: max(max_len // 2, max_len - len(p_ids))]
        stats.answers_cut += 1
    room = max_len - len(a_ids)
    if len(p_ids) > room:
        bos = tokenizer.bos_token_id
        head = p_ids[:1] if bos is not None and p_ids and p_ids[0] == bos else []
        p_ids = head + p_ids[len(p_ids) - (room - len(head)) :]
        stats.prompts_cut += 1
    stats.examples += 1
    stats.prompt_tokens += len(p_ids)
    stats.answer_tokens += len(a_ids)
    return {
        "input_ids": p_ids + a_ids,
        "labels": [IGNORE_INDEX] * len(p_ids) + a_ids,
        "attention_mask": [1] * (len(p_ids) + len(a_ids)),
    }


def encode_examples(build_pair: BuildPair, tokenizer: Any, examples: Sequence[TrainExample], max_len: int, progress: bool = False) -> tuple[list[dict[str, list[int]]], EncodeStats]:
    stats = EncodeStats()
    out = [encode_example(build_pair, tokenizer, ex, max_len, stats) for ex in tqdm(examples, desc="tokenize", disable=not progress, leave=False)]
    return out, stats


def pack(encoded: Sequence[dict[str, list[int]]], max_len: int) -> list[dict[str, list[int]]]:
    """Greedily concatenate whole examples into sequences of at most ``max_len`` tokens.

    ``position_ids`` restart at every example; attention is only kept inside each example by kernels that read
    them (flash-attention-2), otherwise packed examples can attend to earlier ones in the same row. Labels never
    cross a boundary because each example starts with masked prompt tokens.
    """
    packed: list[dict[str, list[int]]] = []
    cur: dict[str, list[int]] = {"input_ids": [], "labels": [], "attention_mask": [], "position_ids": []}
    for ex in encoded:
        n = len(ex["input_ids"])
        if cur["input_ids"] and len(cur["input_ids"]) + n > max_len:
            packed.append(cur)
            cur = {"input_ids": [], "labels": [], "attention_mask": [], "position_ids": []}
        cur["input_ids"] += ex["input_ids"]
        cur["labels"] += ex["labels"]
        cur["attention_mask"] += ex["attention_mask"]
        cur["position_ids"] += list(range(n))
    if cur["input_ids"]:
        packed.append(cur)
    return packed


@dataclass
class PadCollator:
    """Right padding for training: pad id for inputs, -100 for labels, 0 for the attention mask."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            longest = (longest + m - 1) // m * m
        fill = {"input_ids": self.pad_token_id, "labels": IGNORE_INDEX, "attention_mask": 0, "position_ids": 0}
        batch: dict[str, torch.Tensor] = {}
        for key in features[0]:
            rows = [f[key] + [fill[key]] * (longest - len(f[key])) for f in features]
            batch[key] = torch.tensor(rows, dtype=torch.long)
        return batch


def count_tokens(encoded: Sequence[dict[str, list[int]]]) -> dict[str, int]:
    return {
        "tokens": sum(len(e["input_ids"]) for e in encoded),
        "answer_tokens": sum(sum(1 for x in e["labels"] if x != IGNORE_INDEX) for e in encoded),
    }

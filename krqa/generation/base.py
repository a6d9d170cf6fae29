"""What every text-generation engine offers and what it returns: the :class:`Generator` interface, a request's
:class:`Decoding` changes, the sinks that watch an answer grow, and the result types.

The answerer, the service and the trainer's evaluation speak only this; the engines live in
:mod:`krqa.generation.transformers_backend` and :mod:`krqa.generation.vllm_backend`, and
:func:`krqa.generation.factory.make_generator` picks one. Nothing here loads torch or an engine, so the service's
routes and the answerer can import it at no cost.

Each question type has its own token limit; prompts are grouped by type and sorted by length inside a group, so a
batch pads little and never waits for a 512-token 서술형 answer when it only needs a one-digit 선다형 one.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from krqa.generation.config import GenerationConfig
from krqa.qa.data import DESC


@dataclass(frozen=True)
class ContinuationScore:
    """Sum of the continuation's token log-probabilities, and how many tokens and characters it has."""

    logprob: float
    n_tokens: int
    n_chars: int


@dataclass
class Generation:
    """One generated answer; ``ms`` is the wall time of the batch it was generated in (shared by that batch)."""

    text: str
    ms: float
    new_tokens: int
    batch_size: int


@dataclass(frozen=True)
class Decoding:
    """One request's changes to the configured decoding (the OpenAI-style endpoint's ``max_tokens``,
    ``temperature``, ``top_p``, ``stop``, ``seed`` and model choice). The default changes nothing, so answers
    equal ``krqa predict``'s. ``top_p`` and ``seed`` matter only when the answer is sampled; generation ends
    before the first ``stop`` string."""

    max_new_tokens: int | None = None
    temperature: float | None = None
    use_adapter: bool = True
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None


DEFAULT_DECODING = Decoding()


class TextSink(Protocol):
    """Receives one answer's raw text so far while it is generated; ``closed`` once nobody listens any more,
    which stops that row's generation."""

    @property
    def closed(self) -> bool: ...

    def update(self, text: str) -> None: ...


Sinks = Sequence[TextSink | None]


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first of the ``stop`` strings (OpenAI's ``stop``: the stop string is not returned)."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[: min(cuts)] if cuts else text


class CallOff:
    """A row nobody streams that can still be called off: ``close()`` (from any thread) when its request is
    abandoned (timed out, or its client went away); the row stops at its next token and gets no further
    candidates. It takes no text, so generators do not decode for it. With ``watch`` it also closes when that
    sink does (a sampled candidate of a streamed answer is not streamed, but stops with its stream)."""

    def __init__(self, watch: TextSink | None = None) -> None:
        self._event = threading.Event()
        self._watch = watch

    @property
    def closed(self) -> bool:
        return self._event.is_set() or (self._watch is not None and self._watch.closed)

    def close(self) -> None:
        self._event.set()

    def update(self, text: str) -> None:
        """Nobody reads the text of this row."""


class Generator(ABC):
    """Turns prompts into raw answer text; ``question_types`` picks each prompt's token limit."""

    model_name: str
    adapter: str | None
    tokenizer: Any

    def __init__(self, gen_cfg: GenerationConfig) -> None:
        self.gen_cfg = gen_cfg

    def max_new_tokens(self, question_type: str, decoding: Decoding = DEFAULT_DECODING) -> int:
        limit = int(getattr(self.gen_cfg.max_new_tokens, question_type))
        return min(limit, decoding.max_new_tokens) if decoding.max_new_tokens is not None else limit

    def min_new_tokens(self, question_type: str, decoding: Decoding = DEFAULT_DECODING) -> int:
        return min(self.gen_cfg.desc_min_new_tokens, self.max_new_tokens(question_type, decoding)) if question_type == DESC else 0

    def sampling(self, sample_seed: int | None, decoding: Decoding) -> tuple[bool, float]:
        """Whether to sample, and at which temperature: a request's temperature (0 is greedy) wins over the config."""
        t = decoding.temperature
        if sample_seed is not None:
            return True, t or self.gen_cfg.temperature
        if t is not None:
            return t > 0, t or self.gen_cfg.temperature
        return self.gen_cfg.do_sample, self.gen_cfg.temperature

    def generate(self, prompts: list[str], question_types: list[str]) -> list[str]:
        return [g.text for g in self.generate_timed(prompts, question_types)]

    @abstractmethod
    def generate_timed(self, prompts: list[str], question_types: list[str], sample_seed: int | None = None,
                       decoding: Decoding = DEFAULT_DECODING, sinks: Sinks | None = None) -> list[Generation]:
        """Generations in the order of ``prompts``; with ``sample_seed`` they are sampled (temperature, top_p) with
        that seed instead of following ``generation.do_sample``. ``sinks[i]``, when given, sees prompt i's text
        as it grows."""

    @abstractmethod
    def score_options(self, prompts: list[str], continuations: list[list[str]],
                      decoding: Decoding = DEFAULT_DECODING, stop: bool = False) -> list[list[ContinuationScore]]:
        """Log-likelihood of each continuation text right after its prompt (the answer position); with ``stop``,
        followed by the end of the answer (any stop token)."""

    def _plan(self, prompts: Sequence[str], question_types: Sequence[str], lengths: Sequence[int]) -> list[tuple[str, list[int]]]:
        """Batches of prompt indices: one type per batch, longest first within a type (less padding)."""
        if len(prompts) != len(question_types):
            raise ValueError(f"{len(prompts)} prompts but {len(question_types)} question types")
        batches: list[tuple[str, list[int]]] = []
        for qtype in dict.fromkeys(question_types):
            idx = sorted((i for i, t in enumerate(question_types) if t == qtype), key=lambda i: -lengths[i])
            size = self.gen_cfg.batch_size
            batches += [(qtype, idx[s : s + size]) for s in range(0, len(idx), size)]
        return batches

    def stop_token_ids(self, model_eos: Any = None) -> list[int]:
        """EOS of the tokenizer and the model's generation config, plus chat turn ends (Gemma's <end_of_turn>)."""
        ids: list[int] = []
        for value in (self.tokenizer.eos_token_id, model_eos):
            ids += [value] if isinstance(value, int) else list(value or [])
        for token in ("<end_of_turn>", "<|eot_id|>", "<|im_end|>"):
            tid = self.tokenizer.convert_tokens_to_ids(token) if token in self.tokenizer.get_vocab() else None
            if isinstance(tid, int):
                ids.append(tid)
        return list(dict.fromkeys(i for i in ids if i is not None))

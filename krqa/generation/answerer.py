"""Question -> answer, the one code path behind ``krqa predict``, ``krqa serve`` and training's dev evaluation.

Retrieval runs once for all items (the retriever batches its encoder and BM25 work), prompts are built with the
model's tokenizer, the generator batches by question type, and post-processing turns raw text into the answer
the scorer expects. Sharing this class is what makes served answers equal to the prediction file's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from krqa.config import KrqaConfig
from krqa.errors import InputError
from krqa.generation.generator import Generator
from krqa.qa.answers import postprocess
from krqa.qa.data import QAItem
from krqa.qa.prompts import PromptBuilder


@dataclass
class AnswerResult:
    """The answer and how it came about; ``contexts`` are the passages that made it into the prompt."""

    answer: str
    raw: str
    contexts: list[Any]
    timings_ms: dict[str, float]
    prompt_tokens: int = 0
    contexts_retrieved: int = 0
    new_tokens: int = 0


class Answerer:
    def __init__(self, cfg: KrqaConfig, retriever: Any | None, generator: Generator) -> None:
        self.cfg = cfg
        self.retriever = retriever
        self.generator = generator
        self.builder = PromptBuilder(cfg.prompt, generator.tokenizer)

    def answer_items(self, items: list[QAItem], rag: bool = True, top_k: int | None = None, mode: str | None = None) -> list[AnswerResult]:
        """Answers in the order of ``items``. Timings are per call: ``retrieve`` for the whole retrieval call,
        ``generate`` for the generation batch the item was in."""
        if not items:
            return []
        started = time.perf_counter()
        if rag:
            if self.retriever is None:
                raise InputError("RAG is on but no index is loaded; build one with `krqa build-index` or answer with --no-rag")
            hits = self.retriever.search_items(items, top_k=top_k, mode=mode)
        else:
            hits = [[] for _ in items]
        retrieve_ms = (time.perf_counter() - started) * 1000.0 if rag else 0.0
        prompts = [self.builder.build_prompt(item, ctx) for item, ctx in zip(items, hits)]
        generations = self.generator.generate_timed([p.text for p in prompts], [i.question_type for i in items])
        results = []
        for item, ctx, prompt, gen in zip(items, hits, prompts, generations, strict=True):
            results.append(AnswerResult(
                answer=postprocess(item, gen.text, self.cfg.generation),
                raw=gen.text,
                contexts=list(ctx[: prompt.contexts_used]),
                timings_ms={"retrieve": round(retrieve_ms, 3), "generate": round(gen.ms, 3)},
                prompt_tokens=prompt.n_tokens,
                contexts_retrieved=len(ctx),
                new_tokens=gen.new_tokens,
            ))
        return results

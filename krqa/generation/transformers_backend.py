"""The transformers (+peft) engine: batched ``model.generate`` with left padding, token-by-token output to one
listener per row, and option scoring on the model's KV cache (:mod:`krqa.generation.scoring`).

Prompts are tokenized exactly as the trainer tokenizes them (``add_special_tokens=True``), so a fine-tuned adapter
sees at inference the token sequence it was trained on.

transformers' own text streamers handle a batch of one; the service batches concurrent requests into one call
(micro-batching), so each row of the batch gets its own :class:`~krqa.generation.base.TextSink`. A row whose
listener has gone (the client disconnected) is stopped by :class:`ClosedRows`, and the call ends as soon as every
row has stopped, so an abandoned request does not hold the generation thread for its whole token budget.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

import torch
from transformers.generation.stopping_criteria import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from krqa.generation.base import DEFAULT_DECODING, CallOff, ContinuationScore, Decoding, Generation, Generator, Sinks, TextSink, cut_at_stop
from krqa.generation.config import GenerationConfig, ModelConfig
from krqa.generation.lm import load_model, load_tokenizer
from krqa.generation.scoring import continuation_ids, score_continuations
from krqa.model_location import resolve_device


class TransformersGenerator(Generator):
    """Batched ``model.generate`` with left padding; greedy unless ``generation.do_sample``."""

    def __init__(self, model: ModelConfig, generation: GenerationConfig, adapter: str | None = None) -> None:
        super().__init__(generation)
        self.tokenizer = load_tokenizer(model)
        self.model = load_model(model, adapter=adapter)
        self.device = resolve_device(model.device)
        self.model_name = model.base
        self.adapter = adapter
        self.eos_ids = self.stop_token_ids(getattr(self.model.generation_config, "eos_token_id", None))

    def generate_timed(self, prompts: list[str], question_types: list[str], sample_seed: int | None = None,
                       decoding: Decoding = DEFAULT_DECODING, sinks: Sinks | None = None) -> list[Generation]:
        if not prompts:
            return []
        encoded = self.tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
        out: list[Generation | None] = [None] * len(prompts)
        g = self.gen_cfg
        sample, temperature = self.sampling(sample_seed, decoding)
        sampling = ({"do_sample": True, "temperature": temperature, "top_p": decoding.top_p or g.top_p} if sample
                    else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None})
        if decoding.stop:
            sampling.update(stop_strings=list(decoding.stop), tokenizer=self.tokenizer)
        seed = sample_seed if sample_seed is not None else decoding.seed if sample else None
        if seed is not None:
            torch.manual_seed(seed)
        for qtype, idx in self._plan(prompts, question_types, [len(e) for e in encoded]):
            batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, padding=True, return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            rows = [sinks[i] for i in idx] if sinks is not None else []
            readers = [None if isinstance(r, CallOff) else r for r in rows]
            streaming: dict[str, Any] = {"stopping_criteria": [ClosedRows(rows)]} if any(rows) else {}
            if any(readers):
                streaming["streamer"] = BatchStreamer(self.tokenizer, readers, self.eos_ids)
            started = time.perf_counter()
            with torch.inference_mode(), self.adapter_enabled(decoding.use_adapter):
                generated = self.model.generate(
                    **batch,
                    max_new_tokens=self.max_new_tokens(qtype, decoding),
                    min_new_tokens=self.min_new_tokens(qtype, decoding),
                    repetition_penalty=g.repetition_penalty,
                    eos_token_id=self.eos_ids,
                    pad_token_id=self.tokenizer.pad_token_id,
                    **sampling,
                    **streaming,
                )
            ms = (time.perf_counter() - started) * 1000.0
            new = generated[:, batch["input_ids"].shape[1] :].tolist()
            for i, ids in zip(idx, new):
                ids = _until_stop(ids, self.eos_ids, self.tokenizer.pad_token_id)
                text = cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), decoding.stop)
                out[i] = Generation(text.strip(), ms, len(ids), len(idx))
        return [g for g in out if g is not None]

    def adapter_enabled(self, enabled: bool) -> contextlib.AbstractContextManager[Any]:
        """The loaded LoRA adapter, or (``enabled=False``) the base model alone for this call."""
        off = not enabled and self.adapter is not None and hasattr(self.model, "disable_adapter")
        return self.model.disable_adapter() if off else contextlib.nullcontext()

    def score_options(self, prompts: list[str], continuations: list[list[str]],
                      decoding: Decoding = DEFAULT_DECODING, stop: bool = False) -> list[list[ContinuationScore]]:
        if not prompts:
            return []
        prompt_ids = [list(ids) for ids in self.tokenizer(list(prompts), add_special_tokens=True)["input_ids"]]
        cont_ids = continuation_ids(self.tokenizer, prompts, prompt_ids, continuations)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        with self.adapter_enabled(decoding.use_adapter):
            raw = score_continuations(self.model, prompt_ids, cont_ids, pad_id=pad, device=self.device, batch_size=self.gen_cfg.batch_size,
                                      stop_ids=self.eos_ids if stop else (), pass_bytes=self.gen_cfg.score_pass_mb * 2**20)
        return [[ContinuationScore(lp, n, len(text)) for (lp, n), text in zip(row, texts, strict=True)] for row, texts in zip(raw, continuations, strict=True)]


def _until_stop(ids: list[int], stop: list[int], pad: int | None) -> list[int]:
    """Tokens before the first stop token (rows that stopped early are padded after it)."""
    for pos, tid in enumerate(ids):
        if tid in stop:
            return ids[:pos]
    while ids and pad is not None and ids[-1] == pad:
        ids = ids[:-1]
    return ids


class BatchStreamer(BaseStreamer):
    """Decodes each row's new tokens and hands the row's text so far to its sink.

    ``generate`` first passes the prompt ids, then one token per row per step; a row's tokens after its first
    stop token are padding. Text ending in U+FFFD is a multi-byte character cut in half (byte-fallback tokens
    of Korean syllables) and is held back until the rest arrives.
    """

    def __init__(self, tokenizer: Any, sinks: Sequence[TextSink | None], stop_ids: Sequence[int]) -> None:
        self.tokenizer = tokenizer
        self.sinks = list(sinks)
        self.stop_ids = set(stop_ids)
        self.ids: list[list[int]] = [[] for _ in self.sinks]
        self.shown = [""] * len(self.sinks)
        self.stopped = [sink is None for sink in self.sinks]
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            sink = self.sinks[row]
            if self.stopped[row] or sink is None:
                continue
            if token in self.stop_ids or sink.closed:
                self.stopped[row] = True
                continue
            self.ids[row].append(int(token))
            text = self.tokenizer.decode(self.ids[row], skip_special_tokens=True)
            if text != self.shown[row] and not text.endswith("\ufffd"):
                self.shown[row] = text
                sink.update(text)

    def end(self) -> None:
        """Nothing is buffered beyond a cut character, which the final answer replaces anyway."""


class ClosedRows(StoppingCriteria):
    """Marks the rows whose listener has closed as finished."""

    def __init__(self, sinks: Sequence[TextSink | None]) -> None:
        self.sinks = list(sinks)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        closed = [sink is not None and sink.closed for sink in self.sinks]
        return torch.tensor(closed, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]

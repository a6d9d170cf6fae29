"""Token-by-token output of a batched ``model.generate`` call, one listener per row.

transformers' own text streamers handle a batch of one; the service batches concurrent requests into one call
(micro-batching), so each row of the batch gets its own :class:`~krqa.generation.generator.TextSink`. A row whose
listener has gone (the client disconnected) is stopped by :class:`ClosedRows`, and the call ends as soon as every
row has stopped, so an abandoned request does not hold the generation thread for its whole token budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.generation.stopping_criteria import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from krqa.generation.generator import TextSink


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

"""vLLM's async engine for the service: answers stream token by token and an abandoned one is aborted.

The service calls generators from its one generation thread, synchronously. This generator keeps vLLM's
``AsyncLLMEngine`` on an event loop of its own (a daemon thread), submits every prompt of a call at once (vLLM
batches them continuously) and waits for all of them; each output's text so far goes to the prompt's sink, and a
request whose sink has closed is aborted, which frees its place in vLLM's batch.

Not exercised by the CPU test suite: vLLM needs a CUDA GPU.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Any

from krqa.generation.generator import Sinks, TextSink, VllmGenerator

_request_ids = itertools.count(1)


class AsyncVllmGenerator(VllmGenerator):
    """:class:`VllmGenerator` with its engine calls going through ``AsyncLLMEngine.generate``."""

    def start_engine(self, engine_args: dict[str, Any]) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.engine.async_llm_engine import AsyncLLMEngine

        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="krqa-vllm-async", daemon=True).start()

        async def build() -> Any:
            return AsyncLLMEngine.from_engine_args(AsyncEngineArgs(**engine_args))

        self.engine = asyncio.run_coroutine_threadsafe(build(), self.loop).result()

    async def _one(self, request: dict[str, Any], params: Any, lora: Any, sink: TextSink | None) -> Any:
        request_id = f"krqa-{next(_request_ids)}"
        final = None
        async for output in self.engine.generate(request, params, request_id, lora_request=lora):
            final = output
            if sink is None:
                continue
            if sink.closed:
                await self.engine.abort(request_id)
                break
            sink.update(output.outputs[0].text)
        if final is None:
            raise RuntimeError(f"vLLM returned nothing for request {request_id}")
        return final

    def run(self, requests: list[dict[str, Any]], params: Any, lora: Any, sinks: Sinks | None = None) -> list[Any]:
        rows = list(sinks) if sinks is not None else [None] * len(requests)

        async def all_of_them() -> list[Any]:
            return list(await asyncio.gather(*(self._one(r, params, lora, s) for r, s in zip(requests, rows, strict=True))))

        return asyncio.run_coroutine_threadsafe(all_of_them(), self.loop).result()

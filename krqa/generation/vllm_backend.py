"""The vLLM engines (CUDA GPU, optional extra ``vllm``): :class:`VllmGenerator` for batch prediction and
:class:`AsyncVllmGenerator` for the service, where answers stream token by token and an abandoned one is aborted.

vLLM is imported inside the methods that start or drive an engine: it is an optional dependency, so this module
must load without it (to say "vllm is not installed" and to test the async orchestration on a CPU).

The service calls generators from its one generation thread, synchronously. The async generator keeps vLLM's
``AsyncLLMEngine`` on an event loop of its own (a daemon thread), submits every prompt of a call at once (vLLM
batches them continuously) and waits for all of them; each output's text so far goes to the prompt's sink, and a
request whose sink has closed is aborted, which frees its place in vLLM's batch. The engines themselves are not
exercised by the CPU test suite.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from pathlib import Path
from typing import Any

from krqa.errors import InputError
from krqa.fsutil import read_json
from krqa.generation.base import DEFAULT_DECODING, ContinuationScore, Decoding, Generation, Generator, Sinks, TextSink
from krqa.generation.config import GenerationConfig, ModelConfig
from krqa.generation.lm import check_adapter, load_tokenizer
from krqa.generation.scoring import continuation_ids
from krqa.model_location import resolve_lm

VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def adapter_rank(adapter: str | Path) -> int:
    """vLLM sizes its LoRA buffers by ``max_lora_rank``; read the adapter's ``r`` instead of guessing."""
    path = Path(adapter) / "adapter_config.json"
    if not path.is_file():
        raise InputError(f"{adapter}: not a LoRA adapter directory (no adapter_config.json)")
    r = int(read_json(path).get("r", 0))
    if r <= 0:
        raise InputError(f"{path}: r: missing or not a positive rank")
    return next((v for v in VLLM_LORA_RANKS if v >= r), r)


class VllmGenerator(Generator):
    """vLLM engine (GPU); the LoRA adapter goes through ``LoRARequest`` so the base weights stay unmerged."""

    def __init__(self, model: ModelConfig, generation: GenerationConfig, adapter: str | None = None) -> None:
        super().__init__(generation)
        try:
            from vllm.lora.request import LoRARequest  # optional dependency (the vllm extra)
        except ImportError:
            raise InputError("generation.backend=vllm: vllm is not installed; pip install -e '.[vllm]' (needs a CUDA GPU) or use --backend transformers") from None
        base = resolve_lm(model.base, model.cache_dir)
        self.tokenizer = load_tokenizer(model)
        self.model_name = model.base
        self.adapter = adapter
        lora: dict[str, Any] = {}
        self.lora_request = None
        if adapter:
            check_adapter(adapter, base, model.base)
            lora = {"enable_lora": True, "max_lora_rank": adapter_rank(adapter), "max_loras": 1}
            self.lora_request = LoRARequest("krqa", 1, str(adapter))
        self.start_engine(dict(
            model=str(base), tokenizer=str(base), dtype=model.dtype, trust_remote_code=model.trust_remote_code,
            gpu_memory_utilization=generation.vllm_gpu_memory_utilization, max_model_len=generation.vllm_max_model_len, **lora,
        ))
        self.eos_ids = self.stop_token_ids(None)

    def start_engine(self, engine_args: dict[str, Any]) -> None:
        from vllm import LLM  # optional dependency (the vllm extra)

        self.llm = LLM(**engine_args)

    def run(self, requests: list[dict[str, Any]], params: Any, lora: Any, sinks: Sinks | None = None) -> list[Any]:
        """One ``RequestOutput`` per request; a sink gets its whole answer (``AsyncVllmGenerator`` streams)."""
        results = self.llm.generate(requests, params, lora_request=lora, use_tqdm=False)
        for res, sink in zip(results, sinks or [], strict=False):
            if sink is not None and not sink.closed:
                sink.update(res.outputs[0].text)
        return list(results)

    def sampling_params(self, question_type: str, sample_seed: int | None = None, decoding: Decoding = DEFAULT_DECODING) -> Any:
        from vllm import SamplingParams  # optional dependency (the vllm extra)

        g = self.gen_cfg
        sample, temperature = self.sampling(sample_seed, decoding)
        return SamplingParams(
            max_tokens=self.max_new_tokens(question_type, decoding),
            min_tokens=self.min_new_tokens(question_type, decoding),
            temperature=temperature if sample else 0.0,
            top_p=(decoding.top_p or g.top_p) if sample else 1.0,
            repetition_penalty=g.repetition_penalty,
            stop_token_ids=self.eos_ids,
            stop=list(decoding.stop) or None,
            skip_special_tokens=True,
            seed=sample_seed if sample_seed is not None else decoding.seed if sample else None,
        )

    def lora(self, decoding: Decoding) -> Any:
        return self.lora_request if decoding.use_adapter else None

    def generate_timed(self, prompts: list[str], question_types: list[str], sample_seed: int | None = None,
                       decoding: Decoding = DEFAULT_DECODING, sinks: Sinks | None = None) -> list[Generation]:
        if len(prompts) != len(question_types):
            raise ValueError(f"{len(prompts)} prompts but {len(question_types)} question types")
        if not prompts:
            return []
        encoded = self.tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
        out: list[Generation | None] = [None] * len(prompts)
        # vLLM schedules continuously, so one call per type (not per batch) keeps the GPU full.
        for qtype in dict.fromkeys(question_types):
            idx = [i for i, t in enumerate(question_types) if t == qtype]
            started = time.perf_counter()
            results = self.run([{"prompt_token_ids": encoded[i]} for i in idx], self.sampling_params(qtype, sample_seed, decoding),
                               self.lora(decoding), [sinks[i] for i in idx] if sinks is not None else None)
            ms = (time.perf_counter() - started) * 1000.0
            for i, res in zip(idx, results):
                comp = res.outputs[0]
                out[i] = Generation(comp.text.strip(), ms, len(comp.token_ids), len(idx))
        return [g for g in out if g is not None]

    def score_options(self, prompts: list[str], continuations: list[list[str]],
                      decoding: Decoding = DEFAULT_DECODING, stop: bool = False) -> list[list[ContinuationScore]]:
        """vLLM returns the log-probability of every prompt token with ``prompt_logprobs``; each option is sent as
        prompt + option (+ each stop token, with ``stop``), and the option's positions are summed (prefix caching
        shares the prompt's work)."""
        from vllm import SamplingParams  # optional dependency (the vllm extra)

        if not prompts:
            return []
        prompt_ids = [list(ids) for ids in self.tokenizer(list(prompts), add_special_tokens=True)["input_ids"]]
        cont_ids = continuation_ids(self.tokenizer, prompts, prompt_ids, continuations)
        ends: list[list[int]] = [[s] for s in self.eos_ids] if stop else [[]]
        requests = [{"prompt_token_ids": p + c + e} for p, conts in zip(prompt_ids, cont_ids) for c in conts for e in ends]
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        results = iter(self.run(requests, params, self.lora(decoding)))
        out: list[list[ContinuationScore]] = []
        for p, conts, texts in zip(prompt_ids, cont_ids, continuations, strict=True):
            row = []
            for c, text in zip(conts, texts, strict=True):
                totals = []
                for e in ends:
                    logprobs = next(results).prompt_logprobs or []
                    totals.append(sum(logprobs[len(p) + t][tok].logprob for t, tok in enumerate(c + e)))
                top = max(totals)
                total = top + math.log(sum(math.exp(t - top) for t in totals))
                row.append(ContinuationScore(float(total), len(c), len(text)))
            out.append(row)
        return out


_request_ids = itertools.count(1)


class AsyncVllmGenerator(VllmGenerator):
    """:class:`VllmGenerator` with its engine calls going through ``AsyncLLMEngine.generate``."""

    def start_engine(self, engine_args: dict[str, Any]) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs  # optional dependency (the vllm extra)
        from vllm.engine.async_llm_engine import AsyncLLMEngine  # optional dependency (the vllm extra)

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

"""Text generation engines behind one small interface: transformers (+peft) and, optionally, vLLM.

Prompts are tokenized exactly as the trainer tokenizes them (``add_special_tokens=True``), so a fine-tuned adapter
sees at inference the token sequence it was trained on. Each question type has its own token limit; prompts are
grouped by type and sorted by length inside a group, so a batch pads little and never waits for a 512-token
서술형 answer when it only needs a one-digit 선다형 one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from krqa.errors import InputError
from krqa.generation.config import GenerationConfig, ModelConfig
from krqa.generation.scoring import ContinuationScore, continuation_ids, score_continuations
from krqa.qa.data import DESC

log = logging.getLogger(__name__)


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


class TransformersGenerator(Generator):
    """Batched ``model.generate`` with left padding; greedy unless ``generation.do_sample``."""

    def __init__(self, model: ModelConfig, generation: GenerationConfig, adapter: str | None = None) -> None:
        super().__init__(generation)
        from krqa.generation.lm import load_model, load_tokenizer
        from krqa.model_location import resolve_device

        self.tokenizer = load_tokenizer(model)
        self.model = load_model(model, adapter=adapter)
        self.device = resolve_device(model.device)
        self.model_name = model.base
        self.adapter = adapter
        self.eos_ids = self.stop_token_ids(getattr(self.model.generation_config, "eos_token_id", None))

    def generate_timed(self, prompts: list[str], question_types: list[str], sample_seed: int | None = None,
                       decoding: Decoding = DEFAULT_DECODING, sinks: Sinks | None = None) -> list[Generation]:
        import torch

        from krqa.generation.streaming import BatchStreamer, ClosedRows

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


VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def adapter_rank(adapter: str | Path) -> int:
    """vLLM sizes its LoRA buffers by ``max_lora_rank``; read the adapter's ``r`` instead of guessing."""
    path = Path(adapter) / "adapter_config.json"
    if not path.is_file():
        raise InputError(f"{adapter}: not a LoRA adapter directory (no adapter_config.json)")
    r = int(json.loads(path.read_text(encoding="utf-8")).get("r", 0))
    if r <= 0:
        raise InputError(f"{path}: r: missing or not a positive rank")
    return next((v for v in VLLM_LORA_RANKS if v >= r), r)


class VllmGenerator(Generator):
    """vLLM engine (GPU); the LoRA adapter goes through ``LoRARequest`` so the base weights stay unmerged."""

    def __init__(self, model: ModelConfig, generation: GenerationConfig, adapter: str | None = None) -> None:
        super().__init__(generation)
        try:
            from vllm.lora.request import LoRARequest
        except ImportError:
            raise InputError("generation.backend=vllm: vllm is not installed; pip install -e '.[vllm]' (needs a CUDA GPU) or use --backend transformers") from None
        from krqa.generation.lm import load_tokenizer
        from krqa.model_location import resolve_lm

        base = resolve_lm(model.base, model.cache_dir)
        self.tokenizer = load_tokenizer(model)
        self.model_name = model.base
        self.adapter = adapter
        lora: dict[str, Any] = {}
        self.lora_request = None
        if adapter:
            from krqa.generation.lm import check_adapter

            check_adapter(adapter, base, model.base)
            lora = {"enable_lora": True, "max_lora_rank": adapter_rank(adapter), "max_loras": 1}
            self.lora_request = LoRARequest("krqa", 1, str(adapter))
        self.start_engine(dict(
            model=str(base), tokenizer=str(base), dtype=model.dtype, trust_remote_code=model.trust_remote_code,
            gpu_memory_utilization=generation.vllm_gpu_memory_utilization, max_model_len=generation.vllm_max_model_len, **lora,
        ))
        self.eos_ids = self.stop_token_ids(None)

    def start_engine(self, engine_args: dict[str, Any]) -> None:
        from vllm import LLM

        self.llm = LLM(**engine_args)

    def run(self, requests: list[dict[str, Any]], params: Any, lora: Any, sinks: Sinks | None = None) -> list[Any]:
        """One ``RequestOutput`` per request; a sink gets its whole answer (``AsyncVllmGenerator`` streams)."""
        results = self.llm.generate(requests, params, lora_request=lora, use_tqdm=False)
        for res, sink in zip(results, sinks or [], strict=False):
            if sink is not None and not sink.closed:
                sink.update(res.outputs[0].text)
        return list(results)

    def sampling_params(self, question_type: str, sample_seed: int | None = None, decoding: Decoding = DEFAULT_DECODING) -> Any:
        from vllm import SamplingParams

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
        import math

        from vllm import SamplingParams

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


def make_generator(model: ModelConfig, generation: GenerationConfig, adapter: str | None = None, streaming: bool = False) -> Generator:
    """The engine ``generation.backend``; ``adapter`` defaults to ``model.adapter`` ('' for none). ``streaming``
    (the service) picks vLLM's async engine, which hands out answers token by token."""
    adapter = adapter if adapter is not None else model.adapter
    if adapter and not Path(adapter).is_dir():
        raise InputError(f"adapter {adapter}: directory not found")
    if generation.backend == "transformers":
        return TransformersGenerator(model, generation, adapter)
    if generation.backend == "vllm":
        if streaming:
            from krqa.generation.vllm_async import AsyncVllmGenerator

            return AsyncVllmGenerator(model, generation, adapter)
        return VllmGenerator(model, generation, adapter)
    raise InputError(f"generation backend {generation.backend!r}: expected transformers or vllm")

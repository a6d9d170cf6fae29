"""The one place that turns ``generation.backend`` into an engine (called only by :mod:`krqa.wiring`).

Each backend module is imported when it is chosen: both load torch and transformers (seconds), and the vLLM one is
only usable where the optional ``vllm`` extra is installed, so loading this module costs nothing.
"""

from __future__ import annotations

from pathlib import Path

from krqa.errors import InputError
from krqa.generation.base import Generator
from krqa.generation.config import GenerationConfig, ModelConfig


def make_generator(model: ModelConfig, generation: GenerationConfig, adapter: str | None = None, streaming: bool = False) -> Generator:
    """The engine ``generation.backend``; ``adapter`` defaults to ``model.adapter`` ('' for none). ``streaming``
    (the service) picks vLLM's async engine, which hands out answers token by token. The engine's ``adapter`` is
    None when there is none, however the caller said so: the answerer reads it to know a LoRA is loaded."""
    adapter = (adapter if adapter is not None else model.adapter) or None
    if adapter and not Path(adapter).is_dir():
        raise InputError(f"adapter {adapter}: directory not found")
    if generation.backend == "transformers":
        from krqa.generation.transformers_backend import TransformersGenerator  # start-up time: torch and transformers

        return TransformersGenerator(model, generation, adapter)
    if generation.backend == "vllm":
        from krqa.generation.vllm_backend import AsyncVllmGenerator, VllmGenerator  # start-up time: torch and transformers

        return (AsyncVllmGenerator if streaming else VllmGenerator)(model, generation, adapter)
    raise InputError(f"generation backend {generation.backend!r}: expected transformers or vllm")

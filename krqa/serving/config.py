"""Config for the HTTP service."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from krqa.configbase import Section


class ServeConfig(Section):
    host: str = Field("127.0.0.1", description="Bind address (loopback by default).")
    port: int = Field(8000, ge=0, le=65535, description="TCP port.")
    workers: int = Field(1, ge=1, description="uvicorn worker processes (each loads its own model).")
    backend: Literal["transformers", "vllm"] = Field("transformers", description="Generation engine for the service.")
    api_key_env: str = Field("KRQA_API_KEY", description="Environment variable holding the bearer token; auth is on when it is set.")
    max_batch: int = Field(8, ge=1, description="Most requests merged into one generate call.")
    max_wait_ms: float = Field(10.0, ge=0, description="How long the batcher waits to fill a batch.")
    search_max_wait_ms: float = Field(0.0, ge=0, description="Batch window for /search; 0 dispatches at once, and queries arriving while every search thread is busy are still merged.")
    micro_batching: bool = Field(True, description="Merge concurrent /answer requests.")
    queue_size: int = Field(64, ge=1, description="Pending generation requests before 503.")
    request_timeout_s: float = Field(60.0, gt=0, description="Per-request deadline before 504.")
    max_question_chars: int = Field(2000, ge=10, description="Longest accepted question.")
    max_batch_items: int = Field(32, ge=1, description="Most items in one /answer/batch call.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest accepted request body; bigger bodies get 413 before they are parsed.")
    search_workers: int = Field(2, ge=1, description="Threads serving retrieval-only /search requests, separate from the generation thread.")
    retry_after_s: int = Field(1, ge=0, description="Retry-After seconds sent with 503 (queue full or still loading).")

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
    max_batch_chars: int = Field(16_000, ge=100, description="Most characters (question + topic_keyword, summed over the items) in one /answer/batch call; each item also obeys max_question_chars.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest accepted request body; bigger bodies get 413 before they are parsed.")
    search_workers: int = Field(2, ge=1, description="Threads serving BM25 /search requests, separate from the generation thread and from encoder work.")
    dense_search_workers: int = Field(1, ge=1, description="Threads serving dense and hybrid /search requests (they wait for the query encoder); their own pool, so encoder work never holds up BM25 search.")
    dense_queue_size: int = Field(16, ge=1, description="Pending dense/hybrid /search requests before 503.")
    retry_after_s: int = Field(1, ge=0, description="Retry-After seconds sent with 503 (queue full or still loading).")
    header_timeout_s: float = Field(10.0, gt=0, description="A request line and headers must arrive within this many seconds of the connection (or of the first byte of the next request); otherwise 408 and the connection is closed.")
    max_connections: int = Field(100, ge=1, description="Open connections accepted at once; one more is answered 503 and closed.")
    max_connections_per_client: int = Field(50, ge=1, description="Open connections accepted at once from one client address; one more is answered 503 and closed, so one client cannot take every slot (behind a proxy every client has the proxy's address: raise it there).")
    body_timeout_s: float = Field(10.0, gt=0, description="A request body must arrive within this many seconds of the request head; otherwise 408 and the connection is closed.")
    allowed_hosts: list[str] = Field(default_factory=list, description="Host header values (without port) the service answers, against DNS rebinding; empty: the loopback names (localhost, 127.0.0.1, ::1) and the bound host; '*' allows any. /health and /ready answer any Host.")

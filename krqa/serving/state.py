"""What the endpoints share: loading status, the loaded engine, the batchers, the limits and the metrics.

One :class:`ServiceState` lives on ``app.state.krqa``; endpoints reach it through the ``StateDep`` dependency,
so they can be plain module-level functions on routers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional

from fastapi import Depends, Request

from krqa.config import KrqaConfig
from krqa.errors import InputError, KrqaError
from krqa.generation.base import DEFAULT_DECODING, Decoding, TextSink
from krqa.index.types import SearchParams
from krqa.qa.data import QAItem
from krqa.serving.batcher import MicroBatcher, Outcome, QueueFull
from krqa.serving.engine import Engine
from krqa.serving.limits import Limits
from krqa.serving.metrics import ServiceMetrics

log = logging.getLogger(__name__)

EngineFactory = Callable[[KrqaConfig], Engine]


class ApiError(Exception):
    """An expected failure with its HTTP status, machine-readable code and one-line message."""

    def __init__(self, status: int, code: str, message: str, headers: Optional[dict[str, str]] = None,
                 param: Optional[str] = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.param = status, code, message, headers, param


@dataclass(frozen=True)
class AnswerKey:
    """What the items of one model call must share. ``multi`` keeps the items of a multi-item request out of the
    model calls of single requests."""

    rag: bool
    search: SearchParams
    multi: bool = False
    decoding: Decoding = DEFAULT_DECODING
    alone: int = 0
    """Non-zero keeps the request out of everyone else's model call (a seeded sample must not depend on its
    neighbours in the batch)."""


@dataclass(frozen=True)
class AnswerJob:
    """One question for the generation batcher; ``sink`` sees the answer so far when the client streams, or is a
    :class:`CallOff` that stops the item when its request is abandoned."""

    item: QAItem
    sink: Optional[TextSink] = None


class ServiceState:
    """Loading status, the loaded engine and three batchers, each on its own threads: generation (which also
    retrieves for its items), BM25 /search, and dense or hybrid /search (which waits for the query encoder).
    Keeping encoder work off the BM25 threads means a burst of long dense queries cannot starve BM25 search."""

    def __init__(self, cfg: KrqaConfig, factory: EngineFactory, metrics: ServiceMetrics,
                 on_load_error: Optional[Callable[[BaseException], None]]) -> None:
        self.cfg = cfg
        self.serve = cfg.serve
        self.limits = Limits.of(cfg.serve, cfg.retrieval.max_top_k)
        self.factory = factory
        self.metrics = metrics
        self.on_load_error = on_load_error
        self.status: Literal["loading", "ready", "error"] = "loading"
        self.engine: Optional[Engine] = None
        self.answers: Optional[MicroBatcher[AnswerJob, Any]] = None
        self.searches: Optional[MicroBatcher[str, Any]] = None
        self.dense_searches: Optional[MicroBatcher[str, Any]] = None
        # One generation thread: models are not thread-safe, and batching makes one thread enough.
        self.generate_pool = ThreadPoolExecutor(1, thread_name_prefix="krqa-generate")
        self.search_pool = ThreadPoolExecutor(cfg.serve.search_workers, thread_name_prefix="krqa-search")
        self.dense_pool = ThreadPoolExecutor(cfg.serve.dense_search_workers, thread_name_prefix="krqa-dense")
        self.closed = False

    @property
    def retry(self) -> dict[str, str]:
        return {"Retry-After": str(self.serve.retry_after_s)}

    def begin_loading(self) -> None:
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._load, args=(loop,), name="krqa-load", daemon=True).start()

    def _load(self, loop: asyncio.AbstractEventLoop) -> None:
        started = time.perf_counter()
        callback: Callable[[], None]
        try:
            engine = self.factory(self.cfg)
        except BaseException as exc:  # noqa: BLE001 - any load failure must surface as status=error
            callback = functools.partial(self._failed, exc)
        else:
            log.info("model and index loaded in %.1f s", time.perf_counter() - started)
            callback = functools.partial(self._loaded, engine)
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:
            log.debug("server stopped before loading finished")

    def _failed(self, exc: BaseException) -> None:
        self.status = "error"
        if isinstance(exc, KrqaError):
            log.error("loading failed: %s", exc)
        else:
            log.error("loading failed", exc_info=exc)
        if self.on_load_error is not None:
            self.on_load_error(exc)

    def _loaded(self, engine: Engine) -> None:
        if self.closed:
            return
        serve = self.serve
        batch = serve.max_batch if serve.micro_batching else 1
        wait = serve.max_wait_ms if serve.micro_batching else 0.0

        def answer(jobs: list[AnswerJob], key: Hashable) -> list[Any]:
            assert isinstance(key, AnswerKey)
            # Only what differs from the defaults is passed, so any object with predict's answer_items works.
            extra: dict[str, Any] = {}
            if key.decoding != DEFAULT_DECODING:
                extra["decoding"] = key.decoding
            if any(job.sink is not None for job in jobs):
                extra["sinks"] = [job.sink for job in jobs]
            return engine.answerer.answer_items([job.item for job in jobs], rag=key.rag, top_k=key.search.top_k, mode=key.search.mode, **extra)

        self.answers = MicroBatcher(answer, self.generate_pool, max_batch=batch, max_wait_ms=wait,
                                    queue_size=serve.queue_size, on_batch=self.metrics.batch_observer("answer"))
        self.answers.start()
        self.metrics.track_queue("answer", self.answers.qsize)
        if engine.retriever is not None:
            retriever = engine.retriever

            def search(queries: list[str], key: Hashable) -> list[Any]:
                assert isinstance(key, SearchParams)
                return retriever.search_batch(queries, top_k=key.top_k, mode=key.mode)

            search_wait = serve.search_max_wait_ms if serve.micro_batching else 0.0
            self.searches = MicroBatcher(search, self.search_pool, max_batch=batch, max_wait_ms=search_wait,
                                         queue_size=serve.queue_size, concurrency=serve.search_workers,
                                         on_batch=self.metrics.batch_observer("search"))
            self.searches.start()
            self.metrics.track_queue("search", self.searches.qsize)
            self.dense_searches = MicroBatcher(search, self.dense_pool, max_batch=batch, max_wait_ms=search_wait,
                                               queue_size=serve.dense_queue_size, concurrency=serve.dense_search_workers,
                                               on_batch=self.metrics.batch_observer("search_dense"))
            self.dense_searches.start()
            self.metrics.track_queue("search_dense", self.dense_searches.qsize)
        self.engine = engine
        self.status = "ready"
        self.metrics.ready.set(1)

    def require_ready(self) -> Engine:
        if self.status == "ready" and self.engine is not None:
            return self.engine
        if self.status == "error":
            raise ApiError(503, "load_failed", "the model or index failed to load; see the server log")
        raise ApiError(503, "loading", "the model and index are still loading", self.retry)

    async def submit(self, batcher: Optional[MicroBatcher[Any, Any]], payloads: Sequence[Any], keys: Sequence[Any],
                     what: str) -> list[Outcome[Any]]:
        """Queue work on a batcher; a full queue, a missed deadline or bad input become their HTTP errors."""
        if batcher is None:
            raise ApiError(503, "loading", "the model and index are still loading", self.retry)
        try:
            return await batcher.submit(payloads, keys, self.serve.request_timeout_s)
        except QueueFull as exc:
            raise ApiError(503, "queue_full", f"server busy: {exc}", self.retry) from None
        except TimeoutError:
            _call_off(payloads)  # items already in a model call stop there, and get no more candidates
            raise ApiError(504, "timeout", f"no {what} within {self.serve.request_timeout_s:g} s") from None
        except asyncio.CancelledError:
            _call_off(payloads)
            raise
        except InputError as exc:
            log.info("request refused: %s", exc)
            raise ApiError(422, "invalid_request", without_paths(str(exc))) from None

    async def close(self) -> None:
        self.closed = True
        for batcher in (self.answers, self.searches, self.dense_searches):
            if batcher is not None:
                await batcher.stop()
        self.generate_pool.shutdown(wait=False, cancel_futures=True)
        self.search_pool.shutdown(wait=False, cancel_futures=True)
        self.dense_pool.shutdown(wait=False, cancel_futures=True)


def _call_off(payloads: Sequence[Any]) -> None:
    for payload in payloads:
        sink = getattr(payload, "sink", None)
        if sink is not None and hasattr(sink, "close"):
            sink.close()


_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s/'\"`,;:()]+/)*([^\s/'\"`,;:()]+)/?")


def without_paths(message: str) -> str:
    """A message fit for a client: every absolute path becomes its last component (``index /srv/x/idx has no
    dense vectors`` -> ``index idx has …``), so errors do not disclose the server's layout."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1), message)


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.krqa
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]

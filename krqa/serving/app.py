"""The FastAPI app: ``create_app(cfg)`` wires the schemas, batchers, middleware and endpoints.

The model and index load in a background thread after the server starts listening, so orchestrators can
probe ``/health`` (alive) and ``/ready`` (serving) while a large model loads.
"""
# No ``from __future__ import annotations`` here: FastAPI reads the endpoint annotations at definition
# time, and the request classes are local to ``create_app`` because their limits come from the config.

import asyncio
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from krqa import __version__
from krqa.config import KrqaConfig
from krqa.errors import InputError, KrqaError
from krqa.index.types import SearchParams
from krqa.qa.data import QAItem
from krqa.serving.batcher import MicroBatcher, Outcome, QueueFull
from krqa.serving.engine import Engine, load_engine
from krqa.serving.metrics import ServiceMetrics
from krqa.serving.middleware import (
    BearerAuthMiddleware,
    BodyLimitMiddleware,
    ErrorGuardMiddleware,
    MetricsMiddleware,
    error_payload,
)
from krqa.serving.schemas import (
    AnswerBatchResponse,
    AnswerResponse,
    Context,
    ErrorResponse,
    Health,
    SearchResponse,
    Timings,
    request_models,
    to_item,
)

log = logging.getLogger(__name__)

EngineFactory = Callable[[KrqaConfig], Engine]
PROBES = ("/health", "/ready")
_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_request",
               503: "unavailable", 504: "timeout"}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": desc}
    for code, desc in [(401, "Missing or wrong bearer token (when KRQA_API_KEY is set)."),
                       (413, "Body too large."), (422, "Invalid field or limit exceeded."),
                       (503, "Still loading, or the queue is full (see Retry-After)."),
                       (504, "Request timed out.")]
}


class ApiError(Exception):
    """An expected failure with its HTTP status, machine-readable code and one-line message."""

    def __init__(self, status: int, code: str, message: str, headers: Optional[dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class ServiceState:
    """Loading status, the loaded engine and three batchers, each on its own threads: generation (which also
    retrieves for its items), BM25 /search, and dense or hybrid /search (which waits for the query encoder).
    Keeping encoder work off the BM25 threads means a burst of long dense queries cannot starve BM25 search."""

    def __init__(self, cfg: KrqaConfig, factory: EngineFactory, metrics: ServiceMetrics,
                 on_load_error: Optional[Callable[[BaseException], None]]) -> None:
        self.cfg = cfg
        self.factory = factory
        self.metrics = metrics
        self.on_load_error = on_load_error
        self.status = "loading"
        self.engine: Optional[Engine] = None
        self.answers: Optional[MicroBatcher[QAItem, Any]] = None
        self.searches: Optional[MicroBatcher[str, Any]] = None
        self.dense_searches: Optional[MicroBatcher[str, Any]] = None
        # One generation thread: models are not thread-safe, and batching makes one thread enough.
        self.generate_pool = ThreadPoolExecutor(1, thread_name_prefix="krqa-generate")
        self.search_pool = ThreadPoolExecutor(cfg.serve.search_workers, thread_name_prefix="krqa-search")
        self.dense_pool = ThreadPoolExecutor(cfg.serve.dense_search_workers, thread_name_prefix="krqa-dense")
        self.closed = False

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
        serve = self.cfg.serve
        batch = serve.max_batch if serve.micro_batching else 1
        wait = serve.max_wait_ms if serve.micro_batching else 0.0

        def answer(items: list[QAItem], key: Hashable) -> list[Any]:
            rag, params, _ = key  # type: ignore[misc]
            return engine.answerer.answer_items(items, rag=rag, top_k=params.top_k, mode=params.mode)

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
        raise ApiError(503, "loading", "the model and index are still loading",
                       {"Retry-After": str(self.cfg.serve.retry_after_s)})

    async def close(self) -> None:
        self.closed = True
        for batcher in (self.answers, self.searches, self.dense_searches):
            if batcher is not None:
                await batcher.stop()
        self.generate_pool.shutdown(wait=False, cancel_futures=True)
        self.search_pool.shutdown(wait=False, cancel_futures=True)
        self.dense_pool.shutdown(wait=False, cancel_futures=True)


_DOCS_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>krqa API</title></head><body>
<h1>krqa API</h1>
<p>The interactive documentation (Swagger UI, ReDoc) is turned off: it loads its scripts from a CDN, which this
offline service does not use. The OpenAPI schema is at <a href="/openapi.json">/openapi.json</a>; open it in
any OpenAPI viewer. Endpoints: <code>POST /answer</code>, <code>POST /answer/batch</code>, <code>POST /search</code>,
<code>GET /health</code>, <code>GET /ready</code>, <code>GET /metrics</code>.</p>
</body></html>
"""


def _field_errors(exc: RequestValidationError) -> str:
    """``question: String should have at most 2000 characters`` — the field path without the ``body`` prefix."""
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ())]
        if loc and loc[0] == "body":
            loc = loc[1:]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid request"


def _error(status: int, code: str, message: str, headers: Optional[dict[str, str]] = None) -> JSONResponse:
    return JSONResponse(error_payload(code, message), status_code=status, headers=headers)


def create_app(cfg: KrqaConfig, answerer_factory: Optional[EngineFactory] = None,
               on_load_error: Optional[Callable[[BaseException], None]] = None) -> FastAPI:
    """Build the service; ``answerer_factory`` replaces the real loader (tests inject a slowed engine)."""
    serve = cfg.serve
    metrics = ServiceMetrics()
    state = ServiceState(cfg, answerer_factory or load_engine, metrics, on_load_error)
    models = request_models(cfg)
    AnswerRequest, AnswerBatchRequest, SearchRequest = models.answer, models.batch, models.search
    retry = {"Retry-After": str(serve.retry_after_s)}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.begin_loading()
        yield
        await state.close()

    # Swagger UI and ReDoc load their scripts from a CDN, which an offline server cannot reach: they are off,
    # /docs says where the schema is instead.
    app = FastAPI(
        title="krqa", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
        description="Korean retrieval-augmented QA (NIKL 한국문화 질의응답): answers, retrieval, health and metrics.",
    )
    app.state.krqa = state

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", _field_errors(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, _HTTP_CODES.get(exc.status_code, "http_error"), str(exc.detail),
                      dict(exc.headers) if exc.headers else None)

    async def submit(batcher: Any, payloads: list[Any], keys: list[Any], what: str) -> list[Outcome[Any]]:
        """Queue work on a batcher; a full queue, a missed deadline or bad input become their HTTP errors."""
        try:
            return await batcher.submit(payloads, keys, serve.request_timeout_s)
        except QueueFull as exc:
            raise ApiError(503, "queue_full", f"server busy: {exc}", retry) from None
        except TimeoutError:
            raise ApiError(504, "timeout", f"no {what} within {serve.request_timeout_s:g} s") from None
        except InputError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None

    async def run_answers(bodies: list[Any], started: float) -> list[AnswerResponse]:
        engine = state.require_ready()
        assert state.answers is not None
        items = [to_item(b) for b in bodies]
        # The last key field keeps the items of a multi-item request out of the model calls of single requests.
        keys = [(cfg.predict.rag, SearchParams(b.top_k, b.mode), len(bodies) > 1) for b in bodies]
        outcomes: list[Outcome[Any]] = await submit(state.answers, items, keys, "answer")
        total = (time.perf_counter() - started) * 1000.0
        out = []
        for body, outcome in zip(bodies, outcomes):
            res = outcome.result
            timings = res.timings_ms or {}
            out.append(AnswerResponse(
                answer=res.answer,
                question_type=body.question_type,
                contexts=[Context.from_hit(h) for h in res.contexts] if body.return_contexts else [],
                timings_ms=Timings(retrieve=float(timings.get("retrieve", 0.0)),
                                   generate=float(timings.get("generate", 0.0)),
                                   queue=outcome.queue_ms, total=total),
                model=engine.model_name,
                adapter=engine.adapter,
            ))
        return out

    @app.post("/answer", response_model=AnswerResponse, responses=_ERRORS, tags=["qa"])
    async def answer(body: AnswerRequest) -> AnswerResponse:  # type: ignore[valid-type]
        """Answer one question with the configured retriever, prompt, model and post-processing."""
        return (await run_answers([body], time.perf_counter()))[0]

    @app.post("/answer/batch", response_model=AnswerBatchResponse, responses=_ERRORS, tags=["qa"])
    async def answer_batch(body: AnswerBatchRequest) -> AnswerBatchResponse:  # type: ignore[valid-type]
        """Answer up to ``serve.max_batch_items`` questions; results keep the input order."""
        return AnswerBatchResponse(results=await run_answers(list(body.items), time.perf_counter()))

    @app.post("/search", response_model=SearchResponse, responses=_ERRORS, tags=["retrieval"])
    async def search(body: SearchRequest) -> SearchResponse:  # type: ignore[valid-type]
        """Retrieval only, on its own threads so it never waits behind generation; BM25 and encoder-backed
        (dense, hybrid) searches have separate threads and queues."""
        started = time.perf_counter()
        engine = state.require_ready()
        if state.searches is None or state.dense_searches is None or engine.retriever is None:
            raise ApiError(503, "no_index", "no index is loaded (RAG is off and the index is missing)")
        available = engine.retriever.modes
        mode = body.mode or (cfg.retrieval.mode if cfg.retrieval.mode in available else "bm25")
        batcher = state.searches if mode == "bm25" else state.dense_searches
        outcome = (await submit(batcher, [body.query], [SearchParams(body.top_k, body.mode)], "result"))[0]
        total = (time.perf_counter() - started) * 1000.0
        return SearchResponse(query=body.query, mode=mode,
                              hits=[Context.from_hit(h) for h in outcome.result],
                              timings_ms={"queue": outcome.queue_ms, "total": total})

    @app.get("/health", response_model=Health, tags=["ops"])
    async def health() -> Health:
        """Liveness: 200 while loading, ready or failed; ``status`` says which."""
        engine = state.engine
        chunks = None
        if engine is not None and engine.retriever is not None:
            chunks = getattr(getattr(engine.retriever, "manifest", None), "chunk_count", None)
        return Health(status=state.status, model=engine.model_name if engine else None,
                      adapter=engine.adapter if engine else None,
                      index_chunks=chunks if isinstance(chunks, int) else None,
                      detail="see the server log" if state.status == "error" else None)

    @app.get("/ready", response_model=Health, responses=_ERRORS, tags=["ops"])
    async def ready() -> Health:
        """Readiness: 503 until the model and index are loaded."""
        state.require_ready()
        return await health()

    @app.get("/docs", tags=["ops"], response_class=HTMLResponse)
    async def docs() -> HTMLResponse:
        """Where the API description is: the interactive viewers are off because they load from a CDN."""
        return HTMLResponse(_DOCS_PAGE)

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def prometheus() -> Response:
        """Prometheus text format: request counts, latencies, queue lengths, batch sizes."""
        return Response(metrics.render(), media_type=metrics.content_type)

    known = {route.path for route in app.routes}  # type: ignore[attr-defined]
    app.add_middleware(BodyLimitMiddleware, limit=serve.max_body_bytes)
    app.add_middleware(ErrorGuardMiddleware)
    token = os.environ.get(serve.api_key_env, "")
    if token:
        app.add_middleware(BearerAuthMiddleware, token=token, exempt=PROBES)
    app.add_middleware(MetricsMiddleware, metrics=metrics, known_paths=known)
    log.info("bearer auth %s (%s)", "on" if token else "off", serve.api_key_env)
    return app

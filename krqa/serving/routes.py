"""krqa's own endpoints: /answer (whole or streamed), /answer/batch, /search, the probes, /metrics, /docs and the
page at /."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator
from functools import lru_cache
from importlib import resources
from typing import Annotated, Any, Union

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from krqa.generation.base import CallOff
from krqa.index.types import SearchParams
from krqa.serving.limits import enforce
from krqa.serving.middleware import error_payload
from krqa.serving.schemas import (
    AnswerBatchRequest,
    AnswerBatchResponse,
    AnswerRequest,
    AnswerResponse,
    Context,
    ErrorResponse,
    Health,
    SearchRequest,
    SearchResponse,
    Span,
    Timings,
    to_item,
)
from krqa.serving.state import AnswerJob, AnswerKey, ApiError, ServiceState, StateDep
from krqa.serving.streaming import SSE_HEADERS, AnswerStream, Delta, Done, Replace, error_event, sse

log = logging.getLogger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": desc}
    for code, desc in [(401, "Missing or wrong bearer token (when KRQA_API_KEY is set)."),
                       (413, "Body too large."), (422, "Invalid field or limit exceeded."),
                       (503, "Still loading, or the queue is full (see Retry-After)."),
                       (504, "Request timed out.")]
}

router = APIRouter()

_DOCS_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>krqa API</title></head><body>
<h1>krqa API</h1>
<p>The interactive documentation (Swagger UI, ReDoc) is turned off: it loads its scripts from a CDN, which this
offline service does not use. The OpenAPI schema is at <a href="/openapi.json">/openapi.json</a>; open it in
any OpenAPI viewer. Endpoints: <code>POST /answer</code>, <code>POST /answer/batch</code>, <code>POST /search</code>,
<code>GET /v1/models</code>, <code>POST /v1/chat/completions</code>, <code>GET /health</code>, <code>GET /ready</code>,
<code>GET /metrics</code>; a page to ask questions is at <a href="/">/</a>.</p>
</body></html>
"""


def answer_body(body: AnswerRequest, state: StateDep) -> AnswerRequest:
    enforce(state.limits.answer(body))
    return body


def batch_body(body: AnswerBatchRequest, state: StateDep) -> AnswerBatchRequest:
    enforce(state.limits.batch(body))
    return body


def search_body(body: SearchRequest, state: StateDep) -> SearchRequest:
    enforce(state.limits.search(body))
    return body


def answer_key(state: ServiceState, body: AnswerRequest, multi: bool = False) -> AnswerKey:
    return AnswerKey(rag=state.cfg.predict.rag, search=SearchParams(body.top_k, body.mode), multi=multi)


def response(state: ServiceState, body: AnswerRequest, result: Any, queue_ms: float, started: float) -> AnswerResponse:
    engine = state.require_ready()
    timings = result.timings_ms or {}
    return AnswerResponse(
        answer=result.answer,
        question_type=body.question_type,
        contexts=[Context.from_hit(h) for h in result.contexts] if body.return_contexts else [],
        timings_ms=Timings(retrieve=float(timings.get("retrieve", 0.0)), generate=float(timings.get("generate", 0.0)),
                           queue=queue_ms, total=(time.perf_counter() - started) * 1000.0),
        model=engine.model_name,
        adapter=engine.adapter,
        option_probs=result.option_probs or None,
        span=Span.from_result(result.span),
    )


async def run_answers(state: ServiceState, bodies: list[AnswerRequest], started: float) -> list[AnswerResponse]:
    state.require_ready()
    jobs = [AnswerJob(to_item(b), CallOff()) for b in bodies]
    keys = [answer_key(state, b, multi=len(bodies) > 1) for b in bodies]
    outcomes = await state.submit(state.answers, jobs, keys, "answer")
    return [response(state, body, o.result, o.queue_ms, started) for body, o in zip(bodies, outcomes)]


async def _answer_sse(state: ServiceState, body: AnswerRequest, stream: AnswerStream, started: float) -> AsyncIterator[bytes]:
    """``delta`` events ({"text"}), ``replace`` ({"text"}: show this instead), then ``answer`` (the usual
    response) or ``error`` (the usual error body)."""
    try:
        async for event in stream.events():
            if isinstance(event, Delta):
                yield sse({"text": event.text}, "delta")
            elif isinstance(event, Replace):
                yield sse({"text": event.text}, "replace")
            elif isinstance(event, Done):
                out = response(state, body, event.outcome.result, event.outcome.queue_ms, started)
                yield sse(out.model_dump(mode="json"), "answer")
    except Exception as exc:  # noqa: BLE001 - the status line has gone out; the error travels as an event
        status, code, message = error_event(exc)
        if status == 500:
            log.error("streamed /answer failed", exc_info=exc)
        yield sse(error_payload(code, message, status), "error")


@router.post("/answer", response_model=AnswerResponse, responses={**ERRORS, 200: {"content": {"text/event-stream": {}}}}, tags=["qa"])
async def answer(body: Annotated[AnswerRequest, Depends(answer_body)], state: StateDep) -> Union[AnswerResponse, StreamingResponse]:
    """Answer one question with the configured retriever, prompt, model and post-processing; with
    ``stream: true`` as server-sent events while it is generated."""
    started = time.perf_counter()
    if not body.stream:
        return (await run_answers(state, [body], started))[0]
    state.require_ready()
    stream = AnswerStream(state, to_item(body), answer_key(state, body))
    await stream.open()
    return StreamingResponse(_answer_sse(state, body, stream, started), media_type="text/event-stream", headers=SSE_HEADERS)


@router.post("/answer/batch", response_model=AnswerBatchResponse, responses=ERRORS, tags=["qa"])
async def answer_batch(body: Annotated[AnswerBatchRequest, Depends(batch_body)], state: StateDep) -> AnswerBatchResponse:
    """Answer up to ``serve.max_batch_items`` questions; results keep the input order."""
    return AnswerBatchResponse(results=await run_answers(state, list(body.items), time.perf_counter()))


@router.post("/search", response_model=SearchResponse, responses=ERRORS, tags=["retrieval"])
async def search(body: Annotated[SearchRequest, Depends(search_body)], state: StateDep) -> SearchResponse:
    """Retrieval only, on its own threads so it never waits behind generation; BM25 and encoder-backed
    (dense, hybrid) searches have separate threads and queues."""
    started = time.perf_counter()
    engine = state.require_ready()
    if state.searches is None or state.dense_searches is None or engine.retriever is None:
        raise ApiError(503, "no_index", "no index is loaded (RAG is off and the index is missing)")
    available = engine.retriever.modes
    mode = body.mode or (state.cfg.retrieval.mode if state.cfg.retrieval.mode in available else "bm25")
    batcher = state.searches if mode == "bm25" else state.dense_searches
    outcome = (await state.submit(batcher, [body.query], [SearchParams(body.top_k, body.mode)], "result"))[0]
    total = (time.perf_counter() - started) * 1000.0
    return SearchResponse(query=body.query, mode=mode, hits=[Context.from_hit(h) for h in outcome.result],
                          timings_ms={"queue": outcome.queue_ms, "total": total})


@router.get("/health", response_model=Health, tags=["ops"])
async def health(state: StateDep) -> Health:
    """Liveness: 200 while loading, ready or failed; ``status`` says which."""
    engine = state.engine
    chunks = None
    if engine is not None and engine.retriever is not None:
        chunks = getattr(getattr(engine.retriever, "manifest", None), "chunk_count", None)
    return Health(status=state.status, model=engine.model_name if engine else None,
                  adapter=engine.adapter if engine else None,
                  index_chunks=chunks if isinstance(chunks, int) else None,
                  detail="see the server log" if state.status == "error" else None)


@router.get("/ready", response_model=Health, responses=ERRORS, tags=["ops"])
async def ready(state: StateDep) -> Health:
    """Readiness: 503 until the model and index are loaded."""
    state.require_ready()
    return await health(state)


@router.get("/docs", tags=["ops"], response_class=HTMLResponse)
async def docs() -> HTMLResponse:
    """Where the API description is: the interactive viewers are off because they load from a CDN."""
    return HTMLResponse(_DOCS_PAGE)


@router.get("/metrics", tags=["ops"], response_class=Response)
async def prometheus(state: StateDep) -> Response:
    """Prometheus text format: request counts, latencies, queue lengths, batch sizes."""
    return Response(state.metrics.render(), media_type=state.metrics.content_type)


_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.S)


@lru_cache(maxsize=1)
def _page() -> tuple[str, str]:
    """The page and its Content-Security-Policy: only the page's own inline script and style (by hash) run, it
    talks to this origin only, and no other site may frame it. A ``javascript:`` link is blocked by the policy
    too (no 'unsafe-inline'), behind the page's own http(s) check of citation URLs."""
    html = resources.files("krqa.serving").joinpath("static/index.html").read_text(encoding="utf-8")
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for kind, body in _INLINE.findall(html):
        digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
        hashes[kind].append(f"'sha256-{digest}'")
    csp = (f"default-src 'none'; script-src {' '.join(hashes['script'])}; style-src {' '.join(hashes['style'])}; "
           "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return html, csp


@router.get("/", tags=["page"], response_class=HTMLResponse)
async def page() -> HTMLResponse:
    """A page to ask questions from a browser: one static file, no scripts from elsewhere."""
    html, csp = _page()
    return HTMLResponse(html, headers={"Content-Security-Policy": csp})

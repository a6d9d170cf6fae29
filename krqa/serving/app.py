"""The FastAPI app: ``create_app(cfg)`` puts the shared state on the app, includes the routers (krqa's own
endpoints and the OpenAI-compatible ones) and adds the error handlers and middleware.

The model and index load in a background thread after the server starts listening, so orchestrators can
probe ``/health`` (alive) and ``/ready`` (serving) while a large model loads.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from krqa import __version__
from krqa.config import KrqaConfig
from krqa.serving import openai, routes
from krqa.serving.config import ServeConfig
from krqa.serving.engine import load_engine
from krqa.serving.metrics import ServiceMetrics
from krqa.serving.middleware import (
    BearerAuthMiddleware,
    BodyLimitMiddleware,
    BrowserGuardMiddleware,
    ErrorGuardMiddleware,
    MetricsMiddleware,
    error_payload,
)
from krqa.serving.state import ApiError, EngineFactory, ServiceState

log = logging.getLogger(__name__)

# Probes for load balancers, and the page itself (static, no data; its requests carry the token).
PROBES = ("/health", "/ready")
PUBLIC = (*PROBES, "/")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def allowed_hosts(serve: ServeConfig) -> list[str]:
    """``serve.allowed_hosts``, or the loopback names and the bound host when it is empty."""
    return list(serve.allowed_hosts) or [*LOOPBACK_NAMES, serve.host]
_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large", 415: "unsupported_media_type", 421: "misdirected_request", 422: "invalid_request",
               503: "unavailable", 504: "timeout"}


def _field_errors(exc: RequestValidationError) -> tuple[str, Optional[str]]:
    """``question: String should have at most 2000 characters`` — the field path without the ``body`` prefix —
    and the first field's path as the OpenAI ``param``."""
    parts, params = [], []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ())]
        if loc and loc[0] == "body":
            loc = loc[1:]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
        if loc:
            params.append(".".join(loc))
    return "; ".join(parts) or "invalid request", params[0] if params else None


def _error(status: int, code: str, message: str, headers: Optional[dict[str, str]] = None,
           param: Optional[str] = None) -> JSONResponse:
    return JSONResponse(error_payload(code, message, status, param), status_code=status, headers=headers)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _error(exc.status, exc.code, exc.message, exc.headers, exc.param)


async def _invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, param = _field_errors(exc)
    return _error(422, "invalid_request", message, param=param)


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return _error(exc.status_code, _HTTP_CODES.get(exc.status_code, "http_error"), str(exc.detail),
                  dict(exc.headers) if exc.headers else None)


def create_app(cfg: KrqaConfig, answerer_factory: Optional[EngineFactory] = None,
               on_load_error: Optional[Callable[[BaseException], None]] = None) -> FastAPI:
    """Build the service; ``answerer_factory`` replaces the real loader (tests inject a slowed engine)."""
    serve = cfg.serve
    metrics = ServiceMetrics()
    state = ServiceState(cfg, answerer_factory or load_engine, metrics, on_load_error)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.begin_loading()
        yield
        await state.close()

    # Swagger UI and ReDoc load their scripts from a CDN, which an offline server cannot reach: they are off,
    # /docs says where the schema is instead.
    app = FastAPI(
        title="krqa", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
        description="Korean retrieval-augmented QA (NIKL 한국문화 질의응답): answers (also streamed and through an "
                    "OpenAI-compatible API with citations), retrieval, health, metrics and a page to ask questions.",
    )
    app.state.krqa = state
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.include_router(routes.router)
    app.include_router(openai.router)

    # Metrics label every path the app serves by name and all others as "other" (bounded label cardinality).
    known = {getattr(route, "path", "") for router in (app.router, routes.router, openai.router) for route in router.routes}
    app.add_middleware(BodyLimitMiddleware, limit=serve.max_body_bytes, timeout_s=serve.body_timeout_s)
    app.add_middleware(ErrorGuardMiddleware)
    token = os.environ.get(serve.api_key_env, "")
    if token:
        app.add_middleware(BearerAuthMiddleware, token=token, exempt=PUBLIC)
    app.add_middleware(BrowserGuardMiddleware, allowed_hosts=allowed_hosts(serve), exempt=PROBES)
    app.add_middleware(MetricsMiddleware, metrics=metrics, known_paths=known)
    log.info("bearer auth %s (%s)", "on" if token else "off", serve.api_key_env)
    return app

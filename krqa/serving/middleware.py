"""ASGI middleware: metrics, bearer auth, body-size limit and the last-resort error guard.

These are plain ASGI wrappers rather than ``BaseHTTPMiddleware`` so they can reject a request before
its body is read (auth, size) and see every response, including the ones they produce themselves.
Outermost first: metrics -> auth -> error guard -> body limit -> FastAPI.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

from krqa.serving.metrics import ServiceMetrics

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def error_type(status: int) -> str:
    """The OpenAI error class of a status, so OpenAI clients raise the matching exception."""
    if status == 401:
        return "authentication_error"
    if status == 404:
        return "not_found_error"
    return "invalid_request_error" if status < 500 else "server_error"


def error_payload(code: str, message: str, status: int = 400, param: str | None = None) -> dict[str, Any]:
    """The one error shape every failure uses, on every endpoint: OpenAI's (message, type, param, code), so
    OpenAI clients and krqa's own parse a single format."""
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}


async def send_error(send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(error_payload(code, message, status), ensure_ascii=False).encode("utf-8")
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class MetricsMiddleware:
    """Count and time every HTTP request; unknown paths share one label to bound cardinality."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, known_paths: Collection[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.known_paths = frozenset(known_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            path = scope.get("path", "")
            endpoint = path if path in self.known_paths else "other"
            self.metrics.observe_request(endpoint, status, time.perf_counter() - started)


class BearerAuthMiddleware:
    """Require ``Authorization: Bearer <token>`` except on the probe endpoints load balancers call."""

    def __init__(self, app: ASGIApp, token: str, exempt: Collection[str]) -> None:
        self.app = app
        self.expected = token.encode("utf-8")
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        provided = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    provided = token.strip()
                break
        # compare_digest takes the same time wherever the first mismatch is, so timing leaks nothing.
        if not provided or not hmac.compare_digest(provided, self.expected):
            await send_error(send, 401, "unauthorized", "missing or invalid bearer token",
                             {"www-authenticate": "Bearer"})
            return
        await self.app(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Answer 413 for bodies over ``limit`` bytes, by Content-Length or while a chunked body streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body over {self.limit} bytes"
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.limit:
                    await send_error(send, 413, "payload_too_large", message)
                    return
        received = 0
        rejected = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, rejected
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.limit:
                    rejected = True
                    raise _BodyTooLarge
            return msg

        async def guarded_send(msg: Message) -> None:
            nonlocal started
            if rejected:
                return
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            pass
        # The framework may turn the read failure into its own 400; the client gets the 413 instead.
        if rejected and not started:
            await send_error(send, 413, "payload_too_large", message)


class ErrorGuardMiddleware:
    """Turn any unhandled exception into a JSON 500; the trace goes to the server log, never the client."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await send_error(send, 500, "internal_error", "internal server error")

"""ASGI middleware: metrics, bearer auth, body-size limit and the last-resort error guard.

These are plain ASGI wrappers rather than ``BaseHTTPMiddleware`` so they can reject a request before
its body is read (auth, size) and see every response, including the ones they produce themselves.
Outermost first: metrics -> browser guard -> auth -> error guard -> body limit -> FastAPI.
"""

from __future__ import annotations

import asyncio
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


class _BodyRefused(Exception):
    pass


class BodyLimitMiddleware:
    """Answer 413 for bodies over ``limit`` bytes (by Content-Length or while a chunked body streams in) and 408
    for a body that has not fully arrived ``timeout_s`` after the request head.

    uvicorn bounds the wait for a request head (krqa's protocol adds that) but not for its body, and krqa's
    request deadline starts only when the batcher takes the job: a client that sends ``Content-Length: 100`` and
    three bytes would hold its connection for as long as it liked. Bounding the app's ``receive()`` here needs
    no protocol internals; after the body, ``receive()`` (waiting for a disconnect while a response streams) is
    not bounded. The 408 carries ``Connection: close``, so the server closes the connection after it."""

    def __init__(self, app: ASGIApp, limit: int, timeout_s: float) -> None:
        self.app = app
        self.limit = limit
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = (413, "payload_too_large", f"request body over {self.limit} bytes")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.limit:
                    await send_error(send, *too_large)
                    return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        received = 0
        body_done = False
        refused: tuple[int, str, str] | None = None
        started = False

        async def limited_receive() -> Message:
            nonlocal received, refused, body_done
            if body_done:
                return await receive()
            try:
                msg = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                refused = (408, "request_timeout", f"request body not received within {self.timeout_s:g} s")
                raise _BodyRefused from None
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                body_done = not msg.get("more_body", False)
                if received > self.limit:
                    refused = too_large
                    raise _BodyRefused
            return msg

        async def guarded_send(msg: Message) -> None:
            nonlocal started
            if refused is not None:
                return
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyRefused:
            pass
        # The framework may turn the read failure into its own 400; the client gets the 413 or 408 instead.
        if refused is not None and not started:
            status, code, message = refused
            await send_error(send, status, code, message, {"connection": "close"} if status == 408 else None)


class BrowserGuardMiddleware:
    """What a browser needs from a service on loopback or a LAN: a ``Host`` allow-list (DNS rebinding gives
    another site's page this origin, and with it ``/search`` and ``/answer`` of an unauthenticated service), a
    JSON content type on every POST (a page elsewhere can send a ``no-cors`` POST only as text/plain or a form),
    and ``nosniff`` / ``X-Frame-Options`` on every response. ``exempt`` paths (the probes, which an orchestrator
    calls by IP) answer any Host."""

    def __init__(self, app: ASGIApp, allowed_hosts: Collection[str], exempt: Collection[str]) -> None:
        self.app = app
        self.allowed = frozenset(h.lower().strip("[]") for h in allowed_hosts)
        self.any_host = "*" in self.allowed
        self.exempt = frozenset(exempt)

    def host_allowed(self, scope: Scope) -> bool:
        value = next((v for k, v in scope.get("headers", []) if k == b"host"), b"").decode("latin-1").strip().lower()
        host = value[1:value.find("]")] if value.startswith("[") else value.rpartition(":")[0] if value.count(":") == 1 else value
        return host in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def headed_send(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                msg["headers"] = [*msg.get("headers", []), *_SECURITY_HEADERS]
            await send(msg)

        if not self.any_host and scope.get("path") not in self.exempt and not self.host_allowed(scope):
            await send_error(headed_send, 421, "misdirected_request",
                             "this service does not answer for that Host; add it to serve.allowed_hosts")
            return
        if scope.get("method") == "POST":
            ctype = next((v for k, v in scope.get("headers", []) if k == b"content-type"), b"")
            if ctype.split(b";", 1)[0].strip().lower() != b"application/json":
                await send_error(headed_send, 415, "unsupported_media_type", "POST bodies must be sent as Content-Type: application/json")
                return
        await self.app(scope, receive, headed_send)


_SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer")]


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

"""uvicorn's HTTP/1.1 protocol (h11) with the limits a public service needs and uvicorn lacks.

- A request head (request line and headers) must arrive within ``header_timeout_s``; a client that sends half
  a header and waits is answered 408 and disconnected, instead of holding a connection for as long as it likes.
- At most ``max_connections`` connections are open at once, and at most ``max_connections_per_client`` from one
  client address; one more is answered 503 and closed at once, so one client cannot take every slot (and make
  ``/health`` fail for an orchestrator). uvicorn's ``limit_concurrency`` counts all clients together and answers
  only once a request head has arrived, so it cannot do either.
- A request h11 cannot parse (a bad ``Content-Length``, a broken request line) is answered in the service's
  JSON error shape, not uvicorn's plain-text 400.

These replies are written as raw bytes: h11 will not emit a response before it has seen a complete request.
The body's deadline is not here but in :class:`krqa.serving.middleware.BodyLimitMiddleware`, which already wraps
the app's ``receive``: uvicorn has no body timeout, and bounding ``receive()`` needs no protocol internals.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from krqa.serving.config import ServeConfig
from krqa.serving.middleware import error_payload

log = logging.getLogger(__name__)

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 503: b"Service Unavailable"}


def _raw_json_response(status: int, code: str, message: str) -> bytes:
    body = json.dumps(error_payload(code, message, status)).encode("utf-8")
    head = (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (status, _REASONS[status], len(body)))
    return head + body


class GuardedH11Protocol(H11Protocol):
    """Set the limits with :func:`configure` before the server starts (each worker process does)."""

    header_timeout_s: float = 10.0
    max_connections: int = 100
    max_connections_per_client: int = 50

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning("connection refused: %d open, serve.max_connections=%d", len(self.connections) - 1, self.max_connections)
            self._reply_and_close(503, "too_many_connections",
                                  f"more than {self.max_connections} connections open; retry later")
            return
        host = self.client[0] if self.client else None
        if host is not None and sum(1 for c in self.connections if c.client and c.client[0] == host) > self.max_connections_per_client:
            log.warning("connection refused: %s has serve.max_connections_per_client=%d open", host, self.max_connections_per_client)
            self._reply_and_close(503, "too_many_client_connections",
                                  f"more than {self.max_connections_per_client} connections open from this client; retry later")
            return
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_header_timer()  # the head is in; the request deadline takes over
        elif self._header_timer is None:
            self._arm_header_timer()  # first bytes of the next request on a kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._cancel_header_timer()
        self._reply_and_close(400, "bad_request", f"malformed HTTP request: {msg.rstrip('.')}")

    def _arm_header_timer(self) -> None:
        """Runs whenever the connection waits for a request head (new connection, or bytes of the next one)."""
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        log.warning("request head not complete within serve.header_timeout_s=%g s; closing", self.header_timeout_s)
        self._reply_and_close(408, "request_timeout", f"request head not received within {self.header_timeout_s:g} s")

    def _reply_and_close(self, status: int, code: str, message: str) -> None:
        if not self.transport.is_closing():
            self.transport.write(_raw_json_response(status, code, message))
            self.transport.close()


def configure(serve: ServeConfig) -> type[GuardedH11Protocol]:
    """Apply the service's limits to the protocol class and return it for ``uvicorn.Config(http=...)``."""
    GuardedH11Protocol.header_timeout_s = serve.header_timeout_s
    GuardedH11Protocol.max_connections = serve.max_connections
    GuardedH11Protocol.max_connections_per_client = serve.max_connections_per_client
    return GuardedH11Protocol

"""Prometheus metrics of one app, in a registry of its own.

A private registry (rather than the process-global default) lets several apps live in one process,
as in the tests, without duplicate-metric errors or counts leaking between them.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServiceMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "krqa_http_requests", "HTTP requests by endpoint and status code.",
            ["endpoint", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "krqa_http_request_duration_seconds", "Wall time from request to response.",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.batch_size = Histogram(
            "krqa_batch_size", "Requests merged into one model (answer) or retriever (search) call.",
            ["kind"], buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.queue_length = Gauge(
            "krqa_queue_length", "Requests waiting for a worker.", ["kind"], registry=self.registry,
        )
        self.ready = Gauge("krqa_ready", "1 once the model and index are loaded.", registry=self.registry)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()
        self.latency.labels(endpoint=endpoint).observe(seconds)

    def batch_observer(self, kind: str) -> Callable[[int], None]:
        child = self.batch_size.labels(kind=kind)
        return child.observe

    def track_queue(self, kind: str, length: Callable[[], int]) -> None:
        """The gauge reads the live queue at scrape time, so it is never stale."""
        self.queue_length.labels(kind=kind).set_function(length)

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""Micro-batching: concurrent requests share one call into the model (or the retriever).

A generate call on a batch of 8 costs little more than on 1, so waiting a few milliseconds to merge
requests that arrive together raises throughput. The queue is bounded so overload turns into a fast
503 instead of unbounded latency, and work runs in an executor so the event loop keeps answering
``/health``, ``/metrics`` and retrieval-only requests while the model is busy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class QueueFull(Exception):
    """More pending work than ``queue_size``: the caller should answer 503 with Retry-After."""


@dataclass
class _Job(Generic[T]):
    payload: T
    key: Hashable
    future: asyncio.Future[Any]
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class Outcome(Generic[R]):
    """One request's result and how long it waited before its batch started."""

    result: R
    queue_ms: float
    batch_size: int


class MicroBatcher(Generic[T, R]):
    """Queue payloads, merge them into batches of at most ``max_batch`` within ``max_wait_ms``.

    ``run(payloads, key)`` is called once per batch in ``executor``; payloads in one batch share the same
    ``key`` (e.g. top_k and retrieval mode), because one model call takes one set of such settings.
    ``concurrency`` batches may run at once: 1 for a model that is not thread-safe, more for retrieval.
    """

    def __init__(
        self,
        run: Callable[[list[T], Hashable], Sequence[R]],
        executor: Executor,
        *,
        max_batch: int,
        max_wait_ms: float,
        queue_size: int,
        concurrency: int = 1,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._run = run
        self._executor = executor
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[_Job[T]] = asyncio.Queue(maxsize=queue_size)
        self._slots = asyncio.Semaphore(concurrency)
        self._on_batch = on_batch
        self._dispatcher: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch(), name="krqa-batcher")

    async def stop(self) -> None:
        tasks = [t for t in [self._dispatcher, *self._running] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.cancel()

    def qsize(self) -> int:
        return self._queue.qsize()

    async def submit(self, payloads: Sequence[T], keys: Sequence[Hashable], timeout_s: float) -> list[Outcome[R]]:
        """Queue all payloads or none (QueueFull), then wait for them; TimeoutError past ``timeout_s``.

        On timeout the waiting futures are cancelled, so jobs that have not started are dropped from
        their batch instead of occupying the model for a client that has gone.
        """
        if self._queue.maxsize - self._queue.qsize() < len(payloads):
            raise QueueFull(f"{len(payloads)} item(s) do not fit: {self._queue.qsize()} of {self._queue.maxsize} queue slots taken")
        loop = asyncio.get_running_loop()
        futures = []
        for payload, key in zip(payloads, keys, strict=True):
            fut: asyncio.Future[Outcome[R]] = loop.create_future()
            self._queue.put_nowait(_Job(payload, key, fut))
            futures.append(fut)
        try:
            return list(await asyncio.wait_for(asyncio.gather(*futures), timeout_s))
        finally:
            for fut in futures:
                if not fut.done():
                    fut.cancel()

    async def _dispatch(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                batch = await self._collect()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.get_running_loop().create_task(self._execute(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _collect(self) -> list[_Job[T]]:
        """Block for one job, then take whatever else arrives before the wait window closes."""
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _execute(self, batch: list[_Job[T]]) -> None:
        try:
            groups: dict[Hashable, list[_Job[T]]] = {}
            for job in batch:
                if not job.future.done():
                    groups.setdefault(job.key, []).append(job)
            for key, jobs in groups.items():
                if self._on_batch is not None:
                    self._on_batch(len(jobs))
                succeeded = await self._call(jobs, key)
                if not succeeded and len(jobs) > 1:
                    # One bad request (e.g. a query with nothing to search for) must not fail the
                    # requests it happened to be merged with: rerun them one by one.
                    for job in jobs:
                        await self._call([job], key)
        finally:
            self._slots.release()

    async def _call(self, jobs: list[_Job[T]], key: Hashable) -> bool:
        """Run one batch and settle its futures; False when the batch function raised."""
        started = time.perf_counter()
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._run, [j.payload for j in jobs], key)
            if len(results) != len(jobs):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(jobs)} inputs")
        except Exception as exc:
            if len(jobs) == 1 and not jobs[0].future.done():
                jobs[0].future.set_exception(exc)
            return False
        for job, result in zip(jobs, results):
            if not job.future.done():
                job.future.set_result(Outcome(result, (started - job.enqueued) * 1000.0, len(jobs)))
        return True

"""Micro-batching: concurrent requests share one call into the model (or the retriever).

A generate call on a batch of 8 costs little more than on 1, so waiting a few milliseconds to merge
requests that arrive together raises throughput. The queue is bounded so overload turns into a fast
503 instead of unbounded latency, and work runs in an executor so the event loop keeps answering
``/health``, ``/metrics`` and retrieval-only requests while the model is busy.

The queue is fair between requests: batches are filled round-robin, one item per waiting request in turn,
so a 32-item ``/answer/batch`` cannot make a single ``/answer`` wait behind all of its items, and a
request's items only share a model call with items of requests of the same size class (``key``). Jobs
of a request that has timed out are dropped before every call, never run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
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
        self.queue_size = queue_size
        self._pending: OrderedDict[object, deque[_Job[T]]] = OrderedDict()
        self._count = 0
        self._arrived = asyncio.Event()
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
        for jobs in self._pending.values():
            for job in jobs:
                if not job.future.done():
                    job.future.cancel()
        self._pending.clear()
        self._count = 0

    def qsize(self) -> int:
        return self._count

    async def submit(self, payloads: Sequence[T], keys: Sequence[Hashable], timeout_s: float) -> list[Outcome[R]]:
        """Queue all payloads or none (QueueFull), then wait for them; TimeoutError past ``timeout_s``.

        On timeout or cancellation the waiting futures are cancelled and the request's unstarted jobs leave the
        queue, so they neither occupy the model nor count against ``queue_size`` for a client that has gone.
        """
        if self.queue_size - self._count < len(payloads):
            raise QueueFull(f"{len(payloads)} item(s) do not fit: {self._count} of {self.queue_size} queue slots taken")
        loop = asyncio.get_running_loop()
        futures = []
        jobs: deque[_Job[T]] = deque()
        for payload, key in zip(payloads, keys, strict=True):
            fut: asyncio.Future[Outcome[R]] = loop.create_future()
            jobs.append(_Job(payload, key, fut))
            futures.append(fut)
        group = object()
        self._pending[group] = jobs
        self._count += len(jobs)
        self._arrived.set()
        try:
            # asyncio.wait, not wait_for(gather(...)): cancelling a gather (a client that went away) leaves a
            # CancelledError on the gathering future that nobody reads, which asyncio logs as an ERROR.
            done, pending = await asyncio.wait(futures, timeout=timeout_s, return_when=asyncio.FIRST_EXCEPTION)
            for fut in done:
                if not fut.cancelled() and fut.exception() is not None:
                    raise fut.exception()  # type: ignore[misc]
            if pending:
                raise TimeoutError
            return [fut.result() for fut in futures]
        finally:
            for fut in futures:
                if not fut.done():
                    fut.cancel()
            # A request that timed out or was cancelled (its client went away) frees its queue slots at once.
            left = self._pending.pop(group, None)
            if left:
                self._count -= len(left)

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

    def _take(self) -> _Job[T] | None:
        """The next live job, round-robin over requests: the first waiting request gives one job and goes to
        the back of the line. Jobs of requests that timed out are discarded here."""
        while self._pending:
            group, jobs = self._pending.popitem(last=False)
            job = jobs.popleft()
            self._count -= 1
            if jobs:
                self._pending[group] = jobs
            if not job.future.done():
                return job
        return None

    async def _collect(self) -> list[_Job[T]]:
        """Block for one job, then take whatever else arrives before the wait window closes."""
        while (first := self._take()) is None:
            self._arrived.clear()
            await self._arrived.wait()
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            job = self._take()
            if job is not None:
                batch.append(job)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        return batch

    async def _execute(self, batch: list[_Job[T]]) -> None:
        try:
            groups: dict[Hashable, list[_Job[T]]] = {}
            for job in batch:
                groups.setdefault(job.key, []).append(job)
            # Smaller groups first: a lone request does not wait behind the items of a big batch request.
            for key, jobs in sorted(groups.items(), key=lambda kv: len(kv[1])):
                jobs = [j for j in jobs if not j.future.done()]  # a request may have timed out meanwhile
                if not jobs:
                    continue
                if self._on_batch is not None:
                    self._on_batch(len(jobs))
                succeeded = await self._call(jobs, key)
                if not succeeded and len(jobs) > 1:
                    # One bad request (e.g. a query with nothing to search for) must not fail the
                    # requests it happened to be merged with: rerun them one by one.
                    for job in jobs:
                        if not job.future.done():
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

"""One streamed answer: the generation thread's partial answers become text deltas on the event loop.

The sink handed to the generator is called from the generation thread with the post-processed answer so far;
it forwards each one to an asyncio queue. :func:`answer_events` turns them into deltas: text is sent only while
the answer so far extends what was already sent, so the client's text is always a prefix of the answer. When the
final answer does not extend it (a 서술형 draft rejected as not prose and replaced by a sampled candidate, or
cleaning that changed earlier text), a ``Replace`` carries the whole final answer instead.

Closing the stream (the client went away) closes the sink, which stops that row of the running generate call,
and cancels the batcher job, which frees its queue slot if it had not started.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Union

from krqa.serving.batcher import Outcome
from krqa.serving.state import AnswerJob, AnswerKey, ApiError, ServiceState


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Replace:
    """The answer so far is not a prefix of the final answer: show ``text`` in place of everything sent."""

    text: str


@dataclass(frozen=True)
class Done:
    outcome: Outcome[Any]


Event = Union[Delta, Replace, Done]
_END = object()


class QueueSink:
    """The generator-side end of one stream (see :class:`krqa.generation.base.TextSink`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True

    def update(self, text: str) -> None:
        if self._closed:
            return
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, text)
        except RuntimeError:  # the loop has stopped (server shutdown)
            self._closed = True


class AnswerStream:
    """Start with :meth:`open` (errors that come before any output, such as a full queue, raise ``ApiError``
    there, so they get their HTTP status), then iterate :meth:`events`."""

    def __init__(self, state: ServiceState, job_item: Any, key: AnswerKey) -> None:
        self.state, self.item, self.key = state, job_item, key
        self.sink: QueueSink | None = None
        self.task: asyncio.Task[list[Outcome[Any]]] | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.sink = sink = QueueSink(loop)
        self.task = loop.create_task(self.state.submit(self.state.answers, [AnswerJob(self.item, sink)], [self.key], "answer"))
        self.task.add_done_callback(lambda _: sink.queue.put_nowait(_END))
        await asyncio.sleep(0)  # the submission runs up to its first wait: a full queue fails here
        if self.task.done() and self.task.exception() is not None:
            raise self.task.exception()  # type: ignore[misc]

    async def events(self) -> AsyncIterator[Event]:
        assert self.sink is not None and self.task is not None
        sent = ""
        try:
            while (got := await self.sink.queue.get()) is not _END:
                if got.startswith(sent) and len(got) > len(sent):
                    yield Delta(got[len(sent):])
                    sent = got
            outcome = self.task.result()[0]  # raises the request's ApiError
            final = outcome.result.answer
            if final.startswith(sent):
                if len(final) > len(sent):
                    yield Delta(final[len(sent):])
            else:
                yield Replace(final)
            yield Done(outcome)
        finally:
            self.sink.close()
            self.task.cancel()


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event; ``data`` is sent as JSON unless it is already a string."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode("utf-8")


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def error_event(exc: BaseException) -> tuple[int, str, str]:
    """Status, code and message for a failure after the stream has started (the HTTP status is already 200)."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code, exc.message
    return 500, "internal_error", "internal server error"

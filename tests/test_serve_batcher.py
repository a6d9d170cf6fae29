"""The micro-batcher on its own: merging, grouping by settings, queue bound, timeouts and failures."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor

import pytest

from krqa.serving.batcher import MicroBatcher, QueueFull


class Recorder:
    """A batch function that records the batches it saw; ``gate`` holds it until released, ``entered`` tells the
    test a call has reached the worker (so no test waits a guessed time for the dispatcher)."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], Hashable]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, payloads: list[str], key: Hashable) -> list[str]:
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        self.calls.append((list(payloads), key))
        return [f"{p}:{key}" for p in payloads]


def _run(coro):
    return asyncio.run(coro)


async def _until(condition, rounds: int = 10_000) -> None:
    """Yield to the event loop until ``condition`` holds: the batcher's own steps, not a guessed wait."""
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def _with_batcher(fn, body, **kw):
    pool = ThreadPoolExecutor(1)
    batcher = MicroBatcher(fn, pool, **{"max_batch": 8, "max_wait_ms": 50.0, "queue_size": 16, **kw})
    batcher.start()
    try:
        return await body(batcher)
    finally:
        await batcher.stop()
        pool.shutdown(wait=True)


def test_concurrent_requests_share_one_call() -> None:
    rec = Recorder()
    sizes: list[int] = []

    async def body(b: MicroBatcher) -> list:
        return await asyncio.gather(*(b.submit([f"q{i}"], ["k"], 5) for i in range(5)))

    out = _run(_with_batcher(rec, body, on_batch=sizes.append))
    assert [o[0].result for o in out] == [f"q{i}:k" for i in range(5)]
    assert len(rec.calls) == 1 and sorted(rec.calls[0][0]) == [f"q{i}" for i in range(5)]
    assert sizes == [5] and all(o[0].batch_size == 5 for o in out)


def test_batches_never_exceed_max_batch_and_keys_are_not_mixed() -> None:
    rec = Recorder()

    async def body(b: MicroBatcher) -> list:
        subs = [b.submit([f"a{i}"], [("x", 1)], 5) for i in range(5)]
        subs += [b.submit([f"b{i}"], [("y", 2)], 5) for i in range(2)]
        return await asyncio.gather(*subs)

    out = _run(_with_batcher(rec, body, max_batch=3))
    assert [o[0].result for o in out][-1] == "b1:('y', 2)"
    assert all(len(p) <= 3 for p, _ in rec.calls)
    for payloads, key in rec.calls:
        assert {p[0] for p in payloads} == {"a" if key == ("x", 1) else "b"}
    assert sum(len(p) for p, _ in rec.calls) == 7


def test_micro_batching_off_means_batches_of_one() -> None:
    rec = Recorder()

    async def body(b: MicroBatcher) -> list:
        return await asyncio.gather(*(b.submit([f"q{i}"], ["k"], 5) for i in range(4)))

    _run(_with_batcher(rec, body, max_batch=1, max_wait_ms=0.0))
    assert [len(p) for p, _ in rec.calls] == [1, 1, 1, 1]


def test_multi_item_submit_keeps_order() -> None:
    rec = Recorder()

    async def body(b: MicroBatcher) -> list:
        return await b.submit(["x", "y", "z"], ["k", "j", "k"], 5)

    out = _run(_with_batcher(rec, body))
    assert [o.result for o in out] == ["x:k", "y:j", "z:k"]


def test_full_queue_rejects_whole_submission() -> None:
    rec = Recorder()
    rec.gate.clear()

    async def body(b: MicroBatcher) -> None:
        running = asyncio.ensure_future(b.submit(["first"], ["k"], 5))
        assert await asyncio.to_thread(rec.entered.wait, 10)  # the dispatcher has taken 'first' and is blocked in the worker
        queued = asyncio.ensure_future(b.submit(["a", "b"], ["k", "k"], 5))
        await _until(lambda: b.qsize() == 2)
        with pytest.raises(QueueFull):
            await b.submit(["c"], ["k"], 5)
        assert b.qsize() == 2
        rec.gate.set()
        assert [o.result for o in await queued] == ["a:k", "b:k"]
        await running

    _run(_with_batcher(rec, body, queue_size=2, max_wait_ms=0.0))


def test_timed_out_jobs_are_dropped_before_they_run() -> None:
    rec = Recorder()
    rec.gate.clear()

    async def body(b: MicroBatcher) -> None:
        first = asyncio.ensure_future(b.submit(["first"], ["k"], 5))
        assert await asyncio.to_thread(rec.entered.wait, 10)
        with pytest.raises(TimeoutError):
            await b.submit(["late"], ["k"], 0.1)
        rec.gate.set()
        await first
        assert (await b.submit(["next"], ["k"], 5))[0].result == "next:k"

    _run(_with_batcher(rec, body, max_batch=1, max_wait_ms=0.0))
    assert [p for p, _ in rec.calls] == [["first"], ["next"]]


def test_a_failing_request_does_not_fail_the_requests_merged_with_it() -> None:
    calls: list[list[str]] = []

    def picky(payloads: list[str], key: Hashable) -> list[str]:
        calls.append(list(payloads))
        if "boom" in payloads:
            raise ValueError("bad input: boom")
        return [p.upper() for p in payloads]

    async def body(b: MicroBatcher) -> None:
        results = await asyncio.gather(*(b.submit([p], ["k"], 5) for p in ("ok", "boom", "fine")), return_exceptions=True)
        assert results[0][0].result == "OK" and results[2][0].result == "FINE"
        assert isinstance(results[1], ValueError)
        assert (await b.submit(["later"], ["k"], 5))[0].result == "LATER"

    _run(_with_batcher(picky, body))
    assert calls[0] == ["ok", "boom", "fine"] and sorted(calls[1:4]) == [["boom"], ["fine"], ["ok"]]


def test_wrong_result_count_is_an_error() -> None:
    async def body(b: MicroBatcher) -> None:
        with pytest.raises(RuntimeError, match="returned 0 results for 1"):
            await b.submit(["a"], ["k"], 5)

    _run(_with_batcher(lambda payloads, key: [], body))


def test_a_single_request_is_not_served_after_every_item_of_a_big_batch() -> None:
    """Round-robin between requests: the single goes into the next call, not behind the other 11 items."""
    rec = Recorder()
    rec.gate.clear()

    async def body(b: MicroBatcher) -> None:
        big = asyncio.ensure_future(b.submit([f"b{i}" for i in range(12)], ["batch"] * 12, 5))
        assert await asyncio.to_thread(rec.entered.wait, 10)
        await _until(lambda: b.qsize() == 8)  # the first call (4 items) has started and holds the gate
        single = asyncio.ensure_future(b.submit(["s"], ["single"], 5))
        await _until(lambda: b.qsize() == 9)
        rec.gate.set()
        await single
        await big

    _run(_with_batcher(rec, body, max_batch=4, max_wait_ms=0.0))
    order = [p for p, _ in rec.calls]
    assert order[0] == ["b0", "b1", "b2", "b3"]
    assert order[1] == ["s"]  # before the rest of the batch, in a call of its own size class
    assert sum(len(p) for p in order) == 13


def test_items_of_a_timed_out_batch_request_are_never_run() -> None:
    rec = Recorder()
    rec.gate.clear()

    async def body(b: MicroBatcher) -> None:
        with pytest.raises(TimeoutError):
            await b.submit([f"b{i}" for i in range(12)], ["k"] * 12, 0.3)
        rec.gate.set()
        assert (await b.submit(["next"], ["k"], 5))[0].result == "next:k"

    _run(_with_batcher(rec, body, max_batch=4, max_wait_ms=0.0))
    # Only the call that had started when the request timed out ran; the other 8 items were dropped.
    assert [p for p, _ in rec.calls] == [["b0", "b1", "b2", "b3"], ["next"]]


def test_a_cancelled_request_leaves_no_unretrieved_error() -> None:
    """Before: a streaming client that disconnected cancelled asyncio.gather inside wait_for, which left a
    CancelledError on the gathering future; asyncio logged it at ERROR ("_GatheringFuture exception was never
    retrieved"), so any client could fill the error log."""
    import gc

    reported: list[dict] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: reported.append(context))
        release = threading.Event()
        pool = ThreadPoolExecutor(1)

        def blocked(payloads: list[int], key: object) -> list[int]:
            release.wait(10)
            return payloads

        batcher = MicroBatcher(blocked, pool, max_batch=4, max_wait_ms=0, queue_size=8)
        batcher.start()
        for _ in range(3):
            task = loop.create_task(batcher.submit([1, 2], [None, None], 30))
            await asyncio.sleep(0)  # the request is queued (and its first job taken)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        release.set()
        await batcher.stop()
        pool.shutdown(wait=True)
        gc.collect()
        await asyncio.sleep(0)

    asyncio.run(main())
    gc.collect()
    assert not reported, [c.get("message") for c in reported]

"""Streamed answers over real HTTP (uvicorn in a thread, httpx): /answer with ``stream: true``, the OpenAI-style
stream's errors, and what happens when a streaming client goes away (its queue slot and its generation row are
freed)."""

from __future__ import annotations

import concurrent.futures as cf
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from krqa.serving.engine import Engine, load_engine
from tests.test_serve import MC_BODY, assert_error, serving, tiny_config, wait_for_queue_length

pytestmark = pytest.mark.slow

DESC_BODY = {"question": "설날의 풍습을 설명하시오.", "question_type": "서술형", "topic_keyword": "설날"}


@pytest.fixture(scope="module")
def engine(repo: Path, tiny_bm25_index: Path) -> Engine:
    return load_engine(tiny_config(repo, tiny_bm25_index))


@pytest.fixture(scope="module")
def client(repo: Path, tiny_bm25_index: Path, engine: Engine) -> Iterator[httpx.Client]:
    with serving(tiny_config(repo, tiny_bm25_index), lambda cfg: engine) as c:
        yield c


def read_events(resp: httpx.Response) -> list[tuple[str, Any]]:
    """(event, data) pairs of a server-sent event stream."""
    events, name, data = [], "message", []
    for line in resp.iter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            events.append((name, json.loads("\n".join(data))))
            name, data = "message", []
    return events


def shown_text(events: list[tuple[str, Any]]) -> str:
    """What a client displays: the deltas appended, a replace event replacing everything before it."""
    text = ""
    for name, data in events:
        if name == "delta":
            text += data["text"]
        elif name == "replace":
            text = data["text"]
    return text


@pytest.mark.parametrize("body", [DESC_BODY, MC_BODY, {"question": "훈민정음을 만든 왕은?", "question_type": "단답형"}])
def test_streamed_answer_equals_the_whole_answer(client: httpx.Client, body: dict[str, Any]) -> None:
    whole = client.post("/answer", json=body).json()
    with client.stream("POST", "/answer", json={**body, "stream": True}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        events = read_events(resp)
    names = [n for n, _ in events]
    assert names[-1] == "answer" and set(names[:-1]) <= {"delta", "replace"}
    final = events[-1][1]
    assert final["answer"] == whole["answer"] == shown_text(events)
    assert final["contexts"] == whole["contexts"] and final["question_type"] == body["question_type"]
    assert set(final["timings_ms"]) == {"retrieve", "generate", "queue", "total"}
    if body is DESC_BODY:
        assert names.count("delta") >= 2, events  # the 서술형 answer arrived in pieces, not at the end


def test_stream_errors_before_output_keep_their_status(client: httpx.Client) -> None:
    assert_error(client.post("/answer", json={**DESC_BODY, "stream": "yes"}), 422, "invalid_request", "stream")
    assert_error(client.post("/answer", json={**DESC_BODY, "stream": 1}), 422, "invalid_request", "stream")
    assert_error(client.post("/answer/batch", json={"items": [{**DESC_BODY, "stream": True}]}), 422, "invalid_request", "items.0.stream")
    body = assert_error(client.post("/answer", json={**DESC_BODY, "question": "가" * 2001, "stream": True}), 422, "invalid_request", "question")
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == "question"


class Recording:
    """The real answerer behind a gate; records every batch it answered and the results."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.questions: list[str] = []
        self.results: list[Any] = []

    def answer_items(self, items: list[Any], rag: bool = True, top_k: int | None = None, mode: str | None = None, **kwargs: Any) -> list[Any]:
        self.entered.set()
        self.gate.wait(30)
        self.questions += [i.question for i in items]
        out = self.inner.answer_items(items, rag=rag, top_k=top_k, mode=mode, **kwargs)
        self.results += out
        return out


def test_a_client_leaving_while_queued_frees_its_slot(repo: Path, tiny_bm25_index: Path, engine: Engine) -> None:
    rec = Recording(engine.answerer)
    rec.gate.clear()
    cfg = tiny_config(repo, tiny_bm25_index, "serve.queue_size=1", "serve.max_batch=1")
    with serving(cfg, lambda c: replace(engine, answerer=rec)) as c, cf.ThreadPoolExecutor(2) as pool:
        running = pool.submit(c.post, "/answer", json=MC_BODY)
        assert rec.entered.wait(10)
        leaving = {**DESC_BODY, "question": "떠나는 손님의 질문을 설명하시오."}
        with httpx.Client(base_url=str(c.base_url), timeout=30) as other:
            with other.stream("POST", "/answer", json={**leaving, "stream": True}) as resp:
                assert resp.status_code == 200
                wait_for_queue_length(c, 1)
                assert_error(c.post("/v1/chat/completions", json={"model": "tiny-random", "messages": [{"role": "user", "content": "설날 음식은?"}]}),
                             503, "queue_full")
        wait_for_queue_length(c, 0)  # the stream was closed: its job left the queue
        after = pool.submit(c.post, "/answer", json=DESC_BODY)
        wait_for_queue_length(c, 1)
        rec.gate.set()
        assert running.result().status_code == 200 and after.result().status_code == 200
    assert leaving["question"] not in rec.questions


def test_a_client_leaving_mid_answer_stops_its_generation(repo: Path, tiny_bm25_index: Path, engine: Engine) -> None:
    """A 서술형 answer held to 3000 tokens: the client reads the first delta and leaves; the row stops long before."""
    long = load_engine(tiny_config(repo, tiny_bm25_index, "generation.max_new_tokens.서술형=3000", "generation.desc_min_new_tokens=3000",
                                   "generation.desc_candidates=1"))
    rec = Recording(long.answerer)
    with serving(tiny_config(repo, tiny_bm25_index), lambda c: replace(long, answerer=rec)) as c:
        with c.stream("POST", "/answer", json={**DESC_BODY, "stream": True}) as resp:
            for line in resp.iter_lines():
                if line.startswith("event: delta"):
                    break
        short = c.post("/answer", json=MC_BODY)  # waits for the generation thread, so the stopped call has ended
        assert short.status_code == 200
    assert len(rec.results) == 2
    assert rec.results[0].new_tokens < 3000, rec.results[0].new_tokens

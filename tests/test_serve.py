"""The HTTP service end to end: a real uvicorn server on a free loopback port, called over HTTP with httpx.

The tiny random model and a BM25 index of the bundled sample corpus load once per session; apps that need
slow or blocked generation wrap that real answerer (``GatedAnswerer``) through the app factory.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from krqa.config import KrqaConfig, load_config
from krqa.errors import InputError
from krqa.qa.data import QAItem, load_items
from krqa.qa.scorer.lexical import is_option_answer
from krqa.serving.app import create_app
from krqa.serving.engine import Engine, load_engine
from krqa.serving.server import free_port

pytestmark = pytest.mark.slow

MC_Q = "한국의 설날 아침에 먹는 음식은? \\n 1\\t송편 2\\t떡국 3\\t팥죽 4\\t오곡밥"
MC_BODY = {"question": MC_Q, "question_type": "선다형", "topic_keyword": "설날"}


def tiny_config(repo: Path, index_dir: Path, *sets: str) -> KrqaConfig:
    return load_config(repo / "configs" / "tiny-test.yaml", [
        f"index.dir={index_dir}", "index.dense.backend=none", "retrieval.mode=bm25", *sets,
    ])


@pytest.fixture(scope="session")
def index_dir(tiny_bm25_index: Path) -> Path:
    return tiny_bm25_index


@pytest.fixture(scope="session")
def engine(repo: Path, index_dir: Path) -> Engine:
    return load_engine(tiny_config(repo, index_dir))


class GatedAnswerer:
    """The real answerer behind a gate and an optional delay, to hold the generation thread on purpose."""

    def __init__(self, inner: Any, delay: float = 0.0) -> None:
        self.inner = inner
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.finished = threading.Event()

    def answer_items(self, items: list[QAItem], rag: bool = True, top_k: int | None = None, mode: str | None = None, **_: Any) -> list[Any]:
        self.entered.set()
        self.gate.wait(30)
        time.sleep(self.delay)
        out = self.inner.answer_items(items, rag=rag, top_k=top_k, mode=mode)
        self.finished.set()
        return out


def wait_for_queue_length(client: httpx.Client, n: int) -> None:
    """Block until the service reports ``n`` queued /answer requests (so the next one meets a known queue)."""
    deadline = time.monotonic() + 10
    while f'krqa_queue_length{{kind="answer"}} {n}.0' not in client.get("/metrics").text:
        assert time.monotonic() < deadline
        time.sleep(0.02)


@contextlib.contextmanager
def serving(cfg: KrqaConfig, factory: Callable[[KrqaConfig], Engine], wait_ready: bool = True) -> Iterator[httpx.Client]:
    """Run the app under uvicorn in a thread on a free port; yield a client bound to it."""
    app = create_app(cfg, factory)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            if wait_ready:
                while client.get("/ready").status_code != 200:
                    assert time.monotonic() < deadline, client.get("/health").json()
                    time.sleep(0.02)
            yield client
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def client(repo: Path, index_dir: Path, engine: Engine) -> Iterator[httpx.Client]:
    with serving(tiny_config(repo, index_dir), lambda cfg: engine) as c:
        yield c


def assert_error(resp: httpx.Response, status: int, code: str, *fragments: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    for fragment in fragments:
        assert fragment in body["error"]["message"], body
    assert "Traceback" not in resp.text
    return body


# --- happy paths -----------------------------------------------------------------------------------


def test_answer_each_type(client: httpx.Client, engine: Engine) -> None:
    for body in (MC_BODY,
                 {"question": "훈민정음을 만든 왕은?", "question_type": "단답형", "topic_keyword": "훈민정음"},
                 {"question": "설날의 풍습을 설명하시오.", "question_type": "서술형", "category": "문화 지식", "domain": "풍습/문화유산"}):
        resp = client.post("/answer", json=body)
        assert resp.status_code == 200, resp.text
        out = resp.json()
        assert out["question_type"] == body["question_type"]
        assert isinstance(out["answer"], str) and (body is not MC_BODY or is_option_answer(out["answer"], 4))  # 선다형: one of its 4 options
        assert out["model"] == engine.model_name and out["adapter"] == engine.adapter
        assert set(out["timings_ms"]) == {"retrieve", "generate", "queue", "total"}
        assert 1 <= len(out["contexts"]) <= 3  # retrieval.top_k in tiny-test
        assert set(out["contexts"][0]) >= {"title", "section", "text", "score", "source", "doc_id"}
    assert client.post("/answer", json={**MC_BODY, "top_k": 1}).json()["contexts"].__len__() == 1
    assert client.post("/answer", json={**MC_BODY, "return_contexts": False}).json()["contexts"] == []


def test_batch_keeps_order_and_matches_single_answers(client: httpx.Client) -> None:
    items = [MC_BODY, {"question": "추석에 먹는 떡은?", "question_type": "단답형"}, {**MC_BODY, "top_k": 2}]
    resp = client.post("/answer/batch", json={"items": items})
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert [r["question_type"] for r in results] == ["선다형", "단답형", "선다형"]
    for item, result in zip(items, results):
        single = client.post("/answer", json=item).json()
        assert single["answer"] == result["answer"]
        assert [c["doc_id"] for c in single["contexts"]] == [c["doc_id"] for c in result["contexts"]]


def test_search(client: httpx.Client, engine: Engine) -> None:
    resp = client.post("/search", json={"query": "훈민정음 창제", "top_k": 2})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["mode"] == "bm25" and len(out["hits"]) == 2
    direct = engine.retriever.search("훈민정음 창제", top_k=2)
    assert [h["doc_id"] for h in out["hits"]] == [h.doc_id for h in direct]
    assert out["hits"][0]["score"] == pytest.approx(direct[0].score)


def test_health_ready_metrics_docs(client: httpx.Client) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ready" and health["model"]
    assert client.get("/ready").status_code == 200
    client.post("/answer", json={"question": "x", "question_type": "없음"})
    text = client.get("/metrics").text
    assert 'krqa_http_requests_total{endpoint="/answer",status="422"}' in text
    assert 'krqa_queue_length{kind="answer"}' in text and "krqa_batch_size_bucket" in text
    assert 'krqa_http_request_duration_seconds_count{endpoint="/health"}' in text
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/answer", "/answer/batch", "/search", "/health", "/ready", "/metrics"} <= set(schema["paths"])


# --- validation ------------------------------------------------------------------------------------

LONG = "가" * 2001
INVALID_ANSWER = [
    ({"question_type": "단답형"}, "question"),
    ({"question": "", "question_type": "단답형"}, "question"),
    ({"question": "   ", "question_type": "단답형"}, "question"),
    ({"question": LONG, "question_type": "단답형"}, "question"),
    ({"question": 3, "question_type": "단답형"}, "question"),
    ({"question": "q"}, "question_type"),
    ({"question": "q", "question_type": "OX"}, "question_type"),
    ({"question": "설날 음식은? 떡국", "question_type": "선다형"}, "선다형 question without parseable options"),
    ({"question": "q", "question_type": "단답형", "topic_keyword": ["a"]}, "topic_keyword"),
    ({"question": "q", "question_type": "단답형", "category": 1}, "category"),
    ({"question": "q", "question_type": "단답형", "domain": "d" * 201}, "domain"),
    ({"question": "q", "question_type": "단답형", "top_k": 0}, "top_k"),
    ({"question": "q", "question_type": "단답형", "top_k": 101}, "top_k"),
    ({"question": "q", "question_type": "단답형", "top_k": "many"}, "top_k"),
    ({"question": "q", "question_type": "단답형", "top_k": "3"}, "top_k"),
    ({"question": "q", "question_type": "단답형", "top_k": True}, "top_k"),
    ({"question": "q", "question_type": "단답형", "top_k": 2.0}, "top_k"),
    ({"question": "q", "question_type": "단답형", "mode": "splade"}, "mode"),
    ({"question": "q", "question_type": "단답형", "return_contexts": "maybe"}, "return_contexts"),
    ({"question": "q", "question_type": "단답형", "model": "gpt-4"}, "model: Extra inputs are not permitted"),
    ({"question": "q", "question_type": "단답형", "adapter": "/etc/passwd"}, "adapter"),
    ({"question": "q", "question_type": "단답형", "index_dir": "/tmp"}, "index_dir"),
]


@pytest.mark.parametrize("body,fragment", INVALID_ANSWER)
def test_answer_rejects_invalid_fields(client: httpx.Client, body: dict[str, Any], fragment: str) -> None:
    assert_error(client.post("/answer", json=body), 422, "invalid_request", fragment)


@pytest.mark.parametrize("body,fragment", [
    ({"items": []}, "items"),
    ({"items": [MC_BODY] * 33}, "items"),
    ({"items": [MC_BODY, {"question": "q", "question_type": "단답형", "top_k": 0}]}, "items.1.top_k"),
    ({"items": [MC_BODY], "model": "x"}, "model"),
    ({"items": [{"question": "가" * 2000, "question_type": "단답형"}] * 9}, "over serve.max_batch_chars=16000"),
    ({}, "items"),
])
def test_batch_rejects_invalid_fields(client: httpx.Client, body: dict[str, Any], fragment: str) -> None:
    assert_error(client.post("/answer/batch", json=body), 422, "invalid_request", fragment)


@pytest.mark.parametrize("body,fragment", [
    ({}, "query"), ({"query": ""}, "query"), ({"query": " "}, "query"), ({"query": LONG}, "query"),
    ({"query": "q", "top_k": 0}, "top_k"), ({"query": "q", "top_k": 1000}, "top_k"),
    ({"query": "q", "mode": "x"}, "mode"), ({"query": "q", "path": "/etc"}, "path"),
    ({"query": "q", "top_k": "3"}, "top_k"), ({"query": "q", "top_k": True}, "top_k"),
])
def test_search_rejects_invalid_fields(client: httpx.Client, body: dict[str, Any], fragment: str) -> None:
    assert_error(client.post("/search", json=body), 422, "invalid_request", fragment)


def test_malformed_bodies_and_unknown_routes(client: httpx.Client) -> None:
    assert_error(client.post("/answer", content=b"{not json", headers={"content-type": "application/json"}), 422, "invalid_request")
    assert_error(client.post("/answer", json=[MC_BODY]), 422, "invalid_request")
    assert_error(client.get("/answer"), 405, "method_not_allowed")
    assert_error(client.get("/nowhere"), 404, "not_found")


def test_oversized_body_is_413(client: httpx.Client) -> None:
    huge = json.dumps({"question": "가" * 400_000, "question_type": "단답형"}).encode()
    assert_error(client.post("/answer", content=huge, headers={"content-type": "application/json"}), 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while streaming
        for _ in range(40):
            yield b" " * 50_000

    assert_error(client.post("/answer", content=chunks(), headers={"content-type": "application/json"}), 413, "payload_too_large")
    assert client.get("/health").status_code == 200


def test_retriever_input_errors_are_422_not_500(client: httpx.Client, index_dir: Path) -> None:
    # The test index has no dense side, so dense retrieval is a client error the retriever reports.
    resp = client.post("/search", json={"query": "설날", "mode": "dense"})
    assert_error(resp, 422, "invalid_request", "no dense vectors")
    # Before: the message held the index's absolute path.
    assert str(index_dir) not in resp.text and str(index_dir.parent) not in resp.text
    answer = client.post("/answer", json={**MC_BODY, "mode": "dense"})
    assert_error(answer, 422, "invalid_request")
    assert str(index_dir.parent) not in answer.text


def _raw_exchange(client: httpx.Client, payload: bytes) -> bytes:
    """Send raw bytes to the server; everything it sends until it closes the connection (blocking reads: the
    server's reply is the event waited for)."""
    with socket.create_connection((client.base_url.host, client.base_url.port), timeout=30) as sock:
        sock.sendall(payload)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_a_body_that_never_arrives_gets_408_and_the_connection_closes(repo: Path, index_dir: Path, engine: Engine) -> None:
    """Before: the header deadline ended with the head and nothing bounded the body read, so four such sockets
    held four connections (and, at serve.max_connections=4, made /health answer 503) for as long as they liked."""
    with serving(tiny_config(repo, index_dir, "serve.body_timeout_s=1"), lambda cfg: engine) as c:
        head = b"POST /answer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"q"
        with cf.ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda _: _raw_exchange(c, head), range(4)))
            assert c.get("/health").status_code == 200
        for raw in replies:  # recv returned b"": the server closed each connection after its 408
            status, _, rest = raw.partition(b"\r\n")
            assert status.startswith(b"HTTP/1.1 408"), raw[:200]
            assert b"connection: close" in rest.lower()
            assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"
        # A body that arrives in time is answered as usual.
        assert c.post("/answer", json=MC_BODY).status_code == 200


def test_browser_guards_host_content_type_and_headers(client: httpx.Client) -> None:
    """DNS rebinding (another site's page under a name that resolves to 127.0.0.1) and no-cors POSTs from any
    page were answered before; the page had no CSP, X-Frame-Options or nosniff."""
    rebound = client.post("/search", json={"query": "설날"}, headers={"Host": "attacker.example:8000"})
    assert_error(rebound, 421, "misdirected_request", "serve.allowed_hosts")
    assert client.get("/health", headers={"Host": "10.0.0.7:8000"}).status_code == 200  # probes answer any Host
    for host in ("localhost:1234", "127.0.0.1", "[::1]:8000"):
        assert client.get("/metrics", headers={"Host": host}).status_code == 200, host
    body = json.dumps({"query": "설날"}).encode()
    for ctype in (None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        headers = {"content-type": ctype} if ctype else {}
        assert_error(client.post("/search", content=body, headers=headers), 415, "unsupported_media_type")
    assert client.post("/search", content=body, headers={"content-type": "application/json; charset=utf-8"}).status_code == 200
    page = client.get("/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    for resp in (page, client.get("/health"), rebound):
        assert resp.headers["x-content-type-options"] == "nosniff" and resp.headers["x-frame-options"] == "DENY"
    assert "webUrl(c.url)" in page.text  # the page itself keeps only http(s) links


# --- auth, overload, timeouts, loading ---------------------------------------------------------------


def test_bearer_auth(repo: Path, index_dir: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRQA_API_KEY", "s3cret-token")
    with serving(tiny_config(repo, index_dir), lambda cfg: engine) as c:
        assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200
        for method, path, body in [("POST", "/answer", MC_BODY), ("POST", "/answer/batch", {"items": [MC_BODY]}),
                                   ("POST", "/search", {"query": "설날"}), ("GET", "/metrics", None), ("GET", "/docs", None)]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"},
                            {"Authorization": "Bearer s3cret-tokenX"}):
                resp = c.request(method, path, json=body, headers=headers)
                assert_error(resp, 401, "unauthorized")
                assert resp.headers["www-authenticate"] == "Bearer"
            ok = c.request(method, path, json=body, headers={"Authorization": "Bearer s3cret-token"})
            assert ok.status_code == 200, (path, ok.text)


def test_full_queue_is_503_with_retry_after(repo: Path, index_dir: Path, engine: Engine) -> None:
    slow = GatedAnswerer(engine.answerer)
    slow.gate.clear()
    cfg = tiny_config(repo, index_dir, "serve.queue_size=2", "serve.max_batch=1", "serve.retry_after_s=3")
    with serving(cfg, lambda c: replace(engine, answerer=slow)) as c:
        with cf.ThreadPoolExecutor(3) as pool:
            running = pool.submit(c.post, "/answer", json=MC_BODY)
            assert slow.entered.wait(10)
            queued = [pool.submit(c.post, "/answer", json=MC_BODY) for _ in range(2)]
            wait_for_queue_length(c, 2)
            rejected = c.post("/answer", json=MC_BODY)
            assert_error(rejected, 503, "queue_full")
            assert rejected.headers["retry-after"] == "3"
            assert_error(c.post("/answer/batch", json={"items": [MC_BODY]}), 503, "queue_full")
            # Retrieval-only requests do not queue behind generation.
            assert c.post("/search", json={"query": "설날"}).status_code == 200
            assert not running.done()
            slow.gate.set()
            assert [f.result().status_code for f in [running, *queued]] == [200, 200, 200]
        assert 'krqa_http_requests_total{endpoint="/answer",status="503"} 1.0' in c.get("/metrics").text


def test_timeout_is_504(repo: Path, index_dir: Path, engine: Engine) -> None:
    slow = GatedAnswerer(engine.answerer)
    slow.gate.clear()
    # The gate holds the first request past any deadline; the deadline is long enough that the next request, sent
    # once the abandoned call has ended, is answered in time on a busy machine (0.3 s for both was not).
    cfg = tiny_config(repo, index_dir, "serve.request_timeout_s=2")
    with serving(cfg, lambda c: replace(engine, answerer=slow)) as c:
        assert_error(c.post("/answer", json=MC_BODY), 504, "timeout")
        slow.gate.set()
        assert slow.finished.wait(30)
        assert c.post("/answer", json=MC_BODY).status_code == 200


def test_health_answers_while_loading_and_ready_waits(repo: Path, index_dir: Path, engine: Engine) -> None:
    release = threading.Event()

    def slow_factory(cfg: KrqaConfig) -> Engine:
        release.wait(30)
        return engine

    with serving(tiny_config(repo, index_dir), slow_factory, wait_ready=False) as c:
        assert c.get("/health").json()["status"] == "loading"
        assert_error(c.get("/ready"), 503, "loading")
        assert_error(c.post("/answer", json=MC_BODY), 503, "loading")
        assert_error(c.post("/search", json={"query": "설날"}), 503, "loading")
        release.set()
        deadline = time.monotonic() + 10
        while c.get("/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert c.get("/health").json()["status"] == "ready"


def test_load_failure_is_reported_without_details(repo: Path, index_dir: Path) -> None:
    def broken(cfg: KrqaConfig) -> Engine:
        raise InputError("/secret/path/index: manifest missing")

    with serving(tiny_config(repo, index_dir), broken, wait_ready=False) as c:
        deadline = time.monotonic() + 10
        while c.get("/health").json()["status"] != "error":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        resp = c.get("/ready")
        assert_error(resp, 503, "load_failed")
        assert "/secret" not in resp.text and "/secret" not in c.get("/health").text


class FailingAnswerer:
    """Fault injection: generation crashes with a message that must stay in the server log."""

    def answer_items(self, items: list[QAItem], rag: bool = True, top_k: int | None = None, mode: str | None = None, **_: Any) -> list[Any]:
        raise RuntimeError("CUDA blew up in /secret/model/path")


def test_unexpected_errors_are_json_500_without_details(repo: Path, index_dir: Path, engine: Engine,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    with serving(tiny_config(repo, index_dir), lambda c: replace(engine, answerer=FailingAnswerer())) as c:
        resp = c.post("/answer", json=MC_BODY)
        assert_error(resp, 500, "internal_error")
        assert "secret" not in resp.text and "RuntimeError" not in resp.text
        assert c.get("/health").json()["status"] == "ready"
        assert c.post("/search", json={"query": "설날"}).status_code == 200
    assert "CUDA blew up" in caplog.text  # the trace went to the log


def test_concurrent_requests_are_micro_batched(repo: Path, index_dir: Path, engine: Engine) -> None:
    slow = GatedAnswerer(engine.answerer)
    slow.gate.clear()
    cfg = tiny_config(repo, index_dir, "serve.max_batch=4", "serve.max_wait_ms=50")
    with serving(cfg, lambda c: replace(engine, answerer=slow)) as c:
        with cf.ThreadPoolExecutor(5) as pool:
            first = pool.submit(c.post, "/answer", json=MC_BODY)
            assert slow.entered.wait(10)
            rest = [pool.submit(c.post, "/answer", json=MC_BODY) for _ in range(4)]
            wait_for_queue_length(c, 4)
            slow.gate.set()
            answers = {f.result().json()["answer"] for f in [first, *rest]}
        assert len(answers) == 1
        text = c.get("/metrics").text
        assert 'krqa_batch_size_count{kind="answer"} 2.0' in text  # [first] then the four queued together
        assert 'krqa_batch_size_sum{kind="answer"} 5.0' in text


# --- same answers as krqa predict ------------------------------------------------------------------


def _predict_file(repo: Path, index_dir: Path, out: Path, rag: bool) -> dict[str, str]:
    proc = subprocess.run(_krqa("--quiet", "predict", "--config", str(repo / "configs" / "tiny-test.yaml"),
                                "--set", f"index.dir={index_dir}", "--set", "index.dense.backend=none",
                                "--set", "retrieval.mode=bm25", "--rag" if rag else "--no-rag",
                                "--input", str(repo / "corpus" / "sample_qa.json"), "--output", str(out)),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return {rec["id"]: rec["output"]["answer"] for rec in json.loads(out.read_text(encoding="utf-8"))}


def _body(item: QAItem) -> dict[str, Any]:
    return {"question": item.question, "question_type": item.question_type, "topic_keyword": item.topic_keyword,
            "category": item.category, "domain": item.domain}


def test_answers_equal_krqa_predict_without_rag(repo: Path, index_dir: Path, engine: Engine, tmp_path: Path) -> None:
    items = load_items(repo / "corpus" / "sample_qa.json")
    expected = _predict_file(repo, index_dir, tmp_path / "pred.json", rag=False)
    with serving(tiny_config(repo, index_dir, "predict.rag=false"), lambda cfg: engine) as c:
        # Concurrent single requests: the micro-batcher merges them differently from predict's batches.
        with cf.ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda item: c.post("/answer", json=_body(item)), items))
    assert all(r.status_code == 200 for r in responses)
    assert all(r.json()["contexts"] == [] for r in responses)
    assert {item.id: r.json()["answer"] for item, r in zip(items, responses)} == expected


def test_answers_equal_krqa_predict_with_rag(repo: Path, index_dir: Path, client: httpx.Client, tmp_path: Path) -> None:
    items = load_items(repo / "corpus" / "sample_qa.json")
    expected = _predict_file(repo, index_dir, tmp_path / "pred.json", rag=True)
    resp = client.post("/answer/batch", json={"items": [_body(i) for i in items]})
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert all(r["contexts"] for r in results)
    assert {item.id: r["answer"] for item, r in zip(items, results)} == expected


# --- the CLI ---------------------------------------------------------------------------------------


def _krqa(*args: str) -> list[str]:
    return [sys.executable, "-m", "krqa", *args]


def test_cli_serve_missing_index_exits_2_with_one_line(repo: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-index"
    proc = subprocess.run(_krqa("serve", "--config", str(repo / "configs" / "tiny-test.yaml"),
                                "--set", f"index.dir={missing}", "--port", str(free_port())),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("krqa: error: ") and str(missing) in last
    assert "Traceback" not in proc.stderr


def _default_sigint() -> None:
    """Ctrl-C in a terminal reaches a process whose SIGINT is at its default; a suite started in the background
    of a non-interactive shell runs with SIGINT ignored, which the child would inherit (and uvicorn restore)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_cli_serve_answers_and_stops_on_sigint(repo: Path, index_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(_krqa("serve", "--config", str(repo / "configs" / "tiny-test.yaml"), "--set",
                                      f"index.dir={index_dir}", "--set", "index.dense.backend=none",
                                      "--set", "retrieval.mode=bm25", "--port", str(port)),
                                stderr=log_file, stdout=subprocess.DEVNULL, preexec_fn=_default_sigint)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 180
            while True:
                assert proc.poll() is None, log_path.read_text()
                try:
                    if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server not ready"
                time.sleep(0.2)
            resp = httpx.post(f"{base}/answer", json=MC_BODY, timeout=60)
            assert resp.status_code == 200 and resp.json()["contexts"], resp.text
        finally:
            proc.send_signal(signal.SIGINT)
            rc = proc.wait(60)
    log = log_path.read_text()
    assert rc == 130, log  # Ctrl-C: graceful uvicorn shutdown, then the conventional 128+SIGINT
    assert f"127.0.0.1:{port}" in log and "Traceback" not in log

"""Real clients against a real ``krqa serve`` (its own uvicorn process on loopback, bearer auth on): the official
``openai`` package, whole and streamed, and Chromium driven by Playwright through the page at ``/``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from krqa.serving.server import free_port, spawned

pytestmark = pytest.mark.slow

openai = pytest.importorskip("openai", reason="the openai package is a dev dependency: pip install -e '.[dev]'")

TOKEN = "client-test-token"
DESC = {"question": "설날의 풍습을 설명하시오.", "question_type": "서술형", "topic_keyword": "설날"}
MC = {"question": "한국의 설날 아침에 먹는 음식은?", "options": ["송편", "떡국", "팥죽", "오곡밥"], "topic_keyword": "설날"}


@pytest.fixture(scope="module")
def base(repo: Path, tiny_bm25_index: Path) -> Iterator[str]:
    args = ["--config", str(repo / "configs" / "tiny-test.yaml"), "--set", f"index.dir={tiny_bm25_index}",
            "--set", "index.dense.backend=none", "--set", "retrieval.mode=bm25"]
    env = {**os.environ, "KRQA_API_KEY": TOKEN}
    with spawned(args, "127.0.0.1", free_port(), timeout_s=300, quiet=True, env=env) as url:
        yield url


@pytest.fixture(scope="module")
def client(base: str) -> Any:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=TOKEN, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def model(client: Any) -> str:
    return client.models.list().data[0].id


def krqa_answer(base: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(f"{base}/answer", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
    assert resp.status_code == 200, resp.text
    return resp.json()


def ask(client: Any, model: str, question: str, **extra: Any) -> Any:
    return client.chat.completions.create(model=model, messages=[{"role": "system", "content": "한국 문화 질문에 답하세요."},
                                                                 {"role": "user", "content": question}], extra_body=extra)


def test_models_lists_the_served_model(client: Any, base: str) -> None:
    models = client.models.list()
    health = httpx.get(f"{base}/health", timeout=10).json()
    assert [m.id for m in models.data] == [health["model"]] and models.data[0].owned_by == "krqa"


def test_completion_with_citations_equals_answer(client: Any, model: str, base: str) -> None:
    resp = ask(client, model, DESC["question"], question_type="서술형", topic_keyword="설날")
    content = resp.choices[0].message.content
    assert content and resp.choices[0].finish_reason == "stop" and resp.model == model
    assert content == krqa_answer(base, DESC)["answer"]
    citations = resp.citations  # krqa's extension field, kept by the client's models
    assert citations and set(citations[0]) >= {"title", "section", "url", "score", "doc_id", "text"}
    assert [c["index"] for c in citations] == list(range(1, len(citations) + 1))
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_streamed_completion_ends_with_stop_and_citations(client: Any, model: str) -> None:
    whole = ask(client, model, DESC["question"], question_type="서술형", topic_keyword="설날").choices[0].message.content
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": DESC["question"]}], stream=True,
                                            extra_body={"question_type": "서술형", "topic_keyword": "설날"})
    chunks = list(stream)
    text, pieces = "", 0
    for chunk in chunks:
        content = chunk.choices[0].delta.content or ""
        if getattr(chunk, "replace", False):
            text = content
        elif content:
            text, pieces = text + content, pieces + 1
    assert text == whole and pieces >= 2
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop" and last.citations and last.usage.completion_tokens > 0


def test_type_detection_and_options(client: Any, model: str, base: str) -> None:
    detected = ask(client, model, DESC["question"], topic_keyword="설날")
    assert detected.question_type == "서술형"
    assert detected.choices[0].message.content == krqa_answer(base, DESC)["answer"]
    mc = ask(client, model, MC["question"], options=MC["options"], topic_keyword="설날")
    assert mc.question_type == "선다형" and mc.choices[0].message.content in {"1", "2", "3", "4"}
    inline = "한국의 설날 아침에 먹는 음식은?\n" + " ".join(f"{n}\t{o}" for n, o in enumerate(MC["options"], 1))
    expected = krqa_answer(base, {"question": inline, "question_type": "선다형", "topic_keyword": "설날"})["answer"]
    assert mc.choices[0].message.content == expected
    capped = ask(client, model, DESC["question"], question_type="서술형", max_tokens=3)
    assert capped.usage.completion_tokens <= 3


def test_bad_requests_get_openai_errors(client: Any, model: str, base: str) -> None:
    with pytest.raises(openai.BadRequestError) as unknown:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "설날 음식은?"}])
    assert unknown.value.code == "model_not_found" and unknown.value.param == "model" and "tiny-random" in unknown.value.message
    cases = [({"messages": []}, "messages", "at least 1 item"),
             ({"messages": [{"role": "system", "content": "답하세요."}]}, "messages", "no user message"),
             ({"messages": [{"role": "user", "content": "가" * 2001}]}, "messages.0.content", "at most 2000 characters"),
             ({"messages": [{"role": "user", "content": "q"}], "question_type": "OX"}, "question_type", "question_type"),
             ({"messages": [{"role": "user", "content": "q"}], "question_type": "선다형"}, "options", "without options")]
    for body, param, fragment in cases:
        with pytest.raises(openai.UnprocessableEntityError) as err:
            client.chat.completions.create(model=model, **{"messages": body["messages"]}, extra_body={k: v for k, v in body.items() if k != "messages"})
        assert err.value.param == param and err.value.type == "invalid_request_error", (body, err.value.body)
        assert fragment in err.value.message and "Traceback" not in err.value.message
    raw = httpx.post(f"{base}/v1/chat/completions", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30,
                     json={"model": model, "messages": [{"role": "user", "content": "q"}], "stream": "yes"})
    assert raw.status_code == 422 and "Traceback" not in raw.text
    assert set(raw.json()["error"]) == {"message", "type", "param", "code"} and raw.json()["error"]["param"] == "stream"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0).models.list()


def test_standard_openai_fields_are_accepted_and_stop_seed_top_p_honoured(client: Any, model: str) -> None:
    """Before: top_p, presence_penalty, frequency_penalty, stop, seed, response_format, tools and logprobs were
    refused with 422, and GET /v1/models/{id} was 404; SDK wrappers and chat front-ends send some by default."""
    messages = [{"role": "user", "content": DESC["question"]}]
    extra = {"question_type": "서술형", "topic_keyword": "설날"}
    whole = client.chat.completions.create(model=model, messages=messages, extra_body=extra).choices[0].message.content
    assert len(whole) > 4
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
    resp = client.chat.completions.create(model=model, messages=messages, extra_body=extra, top_p=0.9, presence_penalty=0.0,
                                          frequency_penalty=0.0, seed=5, response_format={"type": "text"}, tools=tools,
                                          logprobs=False, user="u1", stop=[whole[2:4]])
    assert resp.choices[0].message.content == whole[: whole.find(whole[2:4])].strip()
    sampled = [client.chat.completions.create(model=model, messages=messages, extra_body=extra, temperature=1.0, top_p=0.9,
                                              seed=11).choices[0].message.content for _ in range(2)]
    assert sampled[0] == sampled[1]  # the same seed, the same sampled answer
    assert client.models.retrieve(model).id == model
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("gpt-4o")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.UnprocessableEntityError) as unknown:
        client.chat.completions.create(model=model, messages=messages, extra_body={"not_a_field": 1})
    assert unknown.value.param == "not_a_field"


def test_options_are_one_line_each_and_count_towards_the_question_limit(client: Any, model: str) -> None:
    """Before: an option holding '\\n2\\t…' added options of its own (the answer number no longer indexed the
    client's list), and 1,500 + 9 x 200 characters were accepted against max_question_chars=2000."""
    for bad in (["송편\n2\t가짜", "떡국"], ["송편\\n 2\\t가짜", "떡국"], ["송편", "떡\t국"]):
        with pytest.raises(openai.UnprocessableEntityError) as err:
            ask(client, model, MC["question"], options=bad)
        assert err.value.param == "options" and "one line" in err.value.message
    inline = "한국의 설날 아침에 먹는 음식은?\n 1\t송편 2\t떡국"
    with pytest.raises(openai.UnprocessableEntityError) as twice:
        ask(client, model, inline, question_type="선다형", options=["팥죽", "오곡밥"])
    assert twice.value.param == "options"
    with pytest.raises(openai.UnprocessableEntityError) as long:
        ask(client, model, "가" * 1500, question_type="선다형", options=["나" * 200] * 9)
    assert long.value.param == "messages.1.content" and "Question and options should have at most 2000 characters" in long.value.message


# --- the page, in Chromium ------------------------------------------------------------------------------


def chromium_path() -> str | None:
    for name in (os.environ.get("KRQA_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        if name and (found := shutil.which(name)):
            return found
    return None


def test_page_streams_an_answer_in_chromium(base: str, repo: Path, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency: pip install -e '.[dev]'")
    browser_path = chromium_path()
    if browser_path is None:
        pytest.skip("no Chromium on this machine: apt-get install -y chromium (or set KRQA_CHROMIUM)")
    shot = Path(os.environ.get("KRQA_PAGE_SCREENSHOT", tmp_path / "page.png"))
    requested: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 820, "height": 1000}, locale="ko-KR")
            page.on("request", lambda req: requested.append(req.url))
            page.goto(f"{base}/")
            assert page.title() == "krqa 한국문화 질의응답"
            page.fill("#question", DESC["question"])
            page.select_option("#qtype", "서술형")
            page.fill("#topic", DESC["topic_keyword"])
            page.click("summary")
            page.fill("#apikey", TOKEN)
            page.click("#ask")
            page.wait_for_selector("#passages li.passage", timeout=120_000)
            page.wait_for_function("!document.querySelector('#answer').classList.contains('streaming')", timeout=60_000)
            answer = page.inner_text("#answer")
            assert answer.strip() == krqa_answer(base, DESC)["answer"]
            assert page.locator("#passages mark").count() >= 1  # the query's terms are highlighted
            assert "첫 글자" in page.inner_text("#timings") and "전체" in page.inner_text("#timings")
            assert "오류" not in page.inner_text("#status")
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider than the screen
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        finally:
            browser.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert requested and all(url.startswith(base) for url in requested), requested  # nothing from a CDN

"""The OpenAI-compatible endpoints: ``GET /v1/models`` and ``POST /v1/chat/completions``.

Any OpenAI client can ask krqa: the last user message is the question; krqa's own fields travel as extension
fields in the body (the client's ``extra_body``): ``question_type`` (guessed when absent), ``topic_keyword``,
``options`` (선다형), ``category``, ``domain``, ``top_k``, ``mode``. Answers come from the same Answerer, batcher,
auth and limits as ``/answer``; with default ``max_tokens``/``temperature`` and the served model they are the
same answers. The passages used come back as ``citations`` (in the stream, on the last chunk before
``[DONE]``), with ``usage`` token counts. Of OpenAI's request fields, ``max_tokens``, ``temperature``, ``top_p``,
``stop`` and ``seed`` are honoured; the others that chat front-ends send by default are accepted and ignored
(listed on :class:`ChatRequest`), and unknown fields are refused. ``GET /v1/models/{id}`` returns one model.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, Optional, Union

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from krqa.generation.base import CallOff, Decoding
from krqa.index.types import SearchParams
from krqa.qa.data import MC
from krqa.qa.qtype import detect_type, with_options
from krqa.serving.limits import enforce, too_big, too_long
from krqa.serving.middleware import error_payload
from krqa.serving.routes import ERRORS
from krqa.serving.schemas import SHORT_FIELD_CHARS, Context, Mode, QuestionType, Span, new_item
from krqa.serving.state import AnswerJob, AnswerKey, ApiError, ServiceState, StateDep
from krqa.serving.streaming import SSE_HEADERS, AnswerStream, Delta, Done, Replace, error_event, sse

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["openai"])
_solo = itertools.count(1)


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[TextPart], None] = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(part.text for part in self.content)
        return self.content or ""


class ChatRequest(BaseModel):
    """OpenAI's chat request (the fields krqa uses or accepts) and krqa's extension fields."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="One of GET /v1/models: the base model, or a loaded adapter.")
    messages: list[ChatMessage] = Field(min_length=1, description="The last user message is the question.")
    stream: StrictBool = False
    stream_options: Optional[dict[str, Any]] = Field(None, description="Accepted; usage is always on the last chunk.")
    max_tokens: Optional[StrictInt] = Field(None, ge=1, description="At most this many new tokens (never more than generation.max_new_tokens of the type).")
    max_completion_tokens: Optional[StrictInt] = Field(None, ge=1, description="Same as max_tokens.")
    temperature: Optional[float] = Field(None, ge=0, le=2, description="0 is greedy; absent follows the config (greedy by default).")
    n: Literal[1] = 1
    user: Optional[str] = None
    top_p: Optional[float] = Field(None, gt=0, le=1, description="Nucleus sampling when the answer is sampled (temperature > 0); absent follows generation.top_p.")
    stop: Union[str, list[str], None] = Field(None, description="Up to 4 strings; the answer ends before the first one (generation stops there). 선다형 answers by option scoring are not cut.")
    seed: Optional[StrictInt] = Field(None, description="Seed for a sampled answer: the same request with the same seed gets the same answer (it is never merged into another request's model call).")
    # Accepted for compatibility (SDKs and chat front-ends send them by default) and ignored: krqa answers in
    # text, calls no tools and returns no log-probabilities. Listed so that unknown fields are still refused.
    presence_penalty: Optional[float] = Field(None, ge=-2, le=2, description="Accepted, ignored.")
    frequency_penalty: Optional[float] = Field(None, ge=-2, le=2, description="Accepted, ignored.")
    logit_bias: Optional[dict[str, float]] = Field(None, description="Accepted, ignored.")
    logprobs: Optional[StrictBool] = Field(None, description="Accepted, ignored: logprobs is always null.")
    top_logprobs: Optional[StrictInt] = Field(None, ge=0, le=20, description="Accepted, ignored.")
    response_format: Optional[dict[str, Any]] = Field(None, description="Accepted, ignored: the answer is text.")
    tools: Optional[list[dict[str, Any]]] = Field(None, description="Accepted, ignored: krqa calls no tools.")
    tool_choice: Union[str, dict[str, Any], None] = Field(None, description="Accepted, ignored.")
    parallel_tool_calls: Optional[StrictBool] = Field(None, description="Accepted, ignored.")
    functions: Optional[list[dict[str, Any]]] = Field(None, description="Accepted, ignored (deprecated OpenAI field).")
    function_call: Union[str, dict[str, Any], None] = Field(None, description="Accepted, ignored (deprecated OpenAI field).")
    metadata: Optional[dict[str, Any]] = Field(None, description="Accepted, ignored.")
    store: Optional[StrictBool] = Field(None, description="Accepted, ignored: nothing is stored.")
    service_tier: Optional[str] = Field(None, description="Accepted, ignored.")
    reasoning_effort: Optional[str] = Field(None, description="Accepted, ignored.")
    modalities: Optional[list[str]] = Field(None, description="Accepted, ignored: text only.")
    question_type: Optional[QuestionType] = Field(None, description="krqa: the question's type; guessed from the question when absent.")
    topic_keyword: str = Field("", max_length=SHORT_FIELD_CHARS, description="krqa: topic keyword, added to the retrieval query.")
    options: Optional[list[Annotated[str, Field(min_length=1, max_length=SHORT_FIELD_CHARS)]]] = Field(None, min_length=2, max_length=9, description="krqa: 선다형 options, in order.")
    category: str = Field("", max_length=SHORT_FIELD_CHARS)
    domain: str = Field("", max_length=SHORT_FIELD_CHARS)
    top_k: Optional[StrictInt] = Field(None, ge=1, description="krqa: passages to retrieve.")
    mode: Optional[Mode] = Field(None, description="krqa: retriever mode.")

    @field_validator("stop")
    @classmethod
    def _stops(cls, stop: Union[str, list[str], None]) -> Optional[list[str]]:
        stops = [stop] if isinstance(stop, str) else stop
        if stops is not None and (len(stops) > 4 or not all(stops)):
            raise ValueError("at most 4 non-empty strings")
        return stops

    @field_validator("options")
    @classmethod
    def _one_line_options(cls, options: Optional[list[str]]) -> Optional[list[str]]:
        """An option is one line of text: a newline, tab or their escapes (as in the competition files) would
        start options of its own, and the answer number would no longer index the client's list."""
        for i, option in enumerate(options or []):
            if any(c in option for c in "\n\r\t") or "\\n" in option or "\\t" in option or not option.strip():
                raise ValueError(f"option {i + 1}: one line of text, without tabs, newlines or their escapes")
        return options

    @field_validator("messages")
    @classmethod
    def _has_question(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        users = [m for m in messages if m.role == "user"]
        if not users:
            raise ValueError("no user message: the last user message is the question")
        if not users[-1].text().strip():
            raise ValueError("the last user message is blank")
        return messages

    def question_index(self) -> int:
        return max(i for i, m in enumerate(self.messages) if m.role == "user")


class Citation(BaseModel):
    index: int = Field(description="1-based position of the passage in the prompt.")
    doc_id: str = Field(description="Id of the document the passage comes from (as in /answer's contexts).")
    title: str
    section: str
    url: str
    score: float
    source: str
    text: str


def chat_body(body: ChatRequest, state: StateDep) -> ChatRequest:
    """The deployment's limits; options count towards the question's characters, as inline options do on /answer."""
    i = body.question_index()
    question = body.messages[i].text()
    chars = len(question) + sum(len(o) for o in body.options or [])
    errors = [too_long(("messages", i, "content"), state.limits.question_chars, "Question and options")] if chars > state.limits.question_chars else []
    if body.top_k is not None and body.top_k > state.limits.top_k:
        errors.append(too_big(("top_k",), state.limits.top_k))
    enforce(errors)
    return body


def _use_adapter(state: ServiceState, model: str) -> bool:
    engine = state.require_ready()
    if model == engine.adapter:
        return True
    if model == engine.model_name:
        return engine.adapter is None
    served = ", ".join(m for m in (engine.model_name, engine.adapter) if m)
    raise ApiError(400, "model_not_found", f"model {model!r} is not served here; GET /v1/models lists {served}", param="model")


def _job(state: ServiceState, body: ChatRequest) -> tuple[Any, AnswerKey]:
    stem = body.messages[body.question_index()].text()
    qtype = body.question_type or detect_type(stem, body.options)
    question = with_options(stem, body.options) if body.options else stem
    item = new_item(qtype, question, body.topic_keyword, body.category, body.domain)
    if qtype == MC and not item.options:
        raise ApiError(422, "invalid_request", "선다형 question without options: send 'options' or number them in the question", param="options")
    if body.options and qtype == MC and [o.strip() for o in item.options] != [o.strip() for o in body.options]:
        # The question text itself holds numbered options: the answer number must index the client's list.
        raise ApiError(422, "invalid_request", "the question already numbers options ('1\\t…'); send them either in the question or in 'options'",
                       param="options")
    decoding = Decoding(max_new_tokens=body.max_tokens or body.max_completion_tokens, temperature=body.temperature,
                        use_adapter=_use_adapter(state, body.model), top_p=body.top_p, stop=tuple(body.stop or ()), seed=body.seed)
    return item, AnswerKey(rag=state.cfg.predict.rag, search=SearchParams(body.top_k, body.mode), decoding=decoding,
                           alone=next(_solo) if body.seed is not None else 0)


def _extras(result: Any, queue_ms: float, started: float, qtype: str) -> dict[str, Any]:
    """krqa's additions to a completion: citations, usage, the type answered and timings."""
    timings = result.timings_ms or {}
    citations = [Citation(index=n, doc_id=c.doc_id, title=c.title, section=c.section, url=c.url, score=c.score,
                          source=c.source, text=c.text).model_dump()
                 for n, c in enumerate((Context.from_hit(h) for h in result.contexts), 1)]
    return {
        "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.new_tokens,
                  "total_tokens": result.prompt_tokens + result.new_tokens},
        "citations": citations,
        "question_type": qtype,
        **({"option_probs": result.option_probs} if result.option_probs else {}),
        **({"span": Span.from_result(result.span).model_dump()} if result.span else {}),
        "timings_ms": {"retrieve": float(timings.get("retrieve", 0.0)), "generate": float(timings.get("generate", 0.0)),
                       "queue": queue_ms, "total": (time.perf_counter() - started) * 1000.0},
    }


def _head(kind: str, model: str) -> dict[str, Any]:
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": model}


async def _chunks(body: ChatRequest, qtype: str, stream: AnswerStream, started: float) -> AsyncIterator[bytes]:
    head = _head("chat.completion.chunk", body.model)

    def chunk(delta: dict[str, Any], finish: Optional[str] = None, **extra: Any) -> bytes:
        return sse({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra})

    yield chunk({"role": "assistant", "content": ""})
    try:
        async for event in stream.events():
            if isinstance(event, Delta):
                yield chunk({"content": event.text})
            elif isinstance(event, Replace):
                # Not OpenAI's: the text so far was a draft; this chunk's content is the whole answer.
                yield chunk({"content": event.text}, replace=True)
            elif isinstance(event, Done):
                yield chunk({}, "stop", **_extras(event.outcome.result, event.outcome.queue_ms, started, qtype))
    except Exception as exc:  # noqa: BLE001 - the status line has gone out; OpenAI clients raise on this event
        status, code, message = error_event(exc)
        if status == 500:
            log.error("streamed chat completion failed", exc_info=exc)
        yield sse(error_payload(code, message, status))
    yield sse("[DONE]")


def _models(state: ServiceState) -> list[dict[str, Any]]:
    engine = state.require_ready()
    created = int(time.time())
    data = [{"id": engine.model_name, "object": "model", "created": created, "owned_by": "krqa"}]
    if engine.adapter:
        data.append({"id": engine.adapter, "object": "model", "created": created, "owned_by": "krqa",
                     "root": engine.model_name, "parent": engine.model_name})
    return data


@router.get("/models")
async def models(state: StateDep) -> dict[str, Any]:
    """The base model and the loaded adapter (when there is one), as OpenAI lists models."""
    return {"object": "list", "data": _models(state)}


@router.get("/models/{model_id:path}", responses={404: ERRORS[422]})
async def model(model_id: str, state: StateDep) -> dict[str, Any]:
    """One served model, as OpenAI retrieves a model; 404 ``model_not_found`` for any other id."""
    for entry in _models(state):
        if entry["id"] == model_id:
            return entry
    raise ApiError(404, "model_not_found", f"model {model_id!r} is not served here; GET /v1/models lists the served ones", param="model")


@router.post("/chat/completions", responses={**ERRORS, 400: ERRORS[422], 200: {"content": {"text/event-stream": {}}}})
async def chat_completions(body: Annotated[ChatRequest, Depends(chat_body)], state: StateDep) -> Any:
    """An OpenAI chat completion answered by krqa, with ``citations``; ``stream: true`` for server-sent events."""
    started = time.perf_counter()
    item, key = _job(state, body)
    if body.stream:
        stream = AnswerStream(state, item, key)
        await stream.open()
        return StreamingResponse(_chunks(body, item.question_type, stream, started), media_type="text/event-stream",
                                 headers=SSE_HEADERS)
    outcome = (await state.submit(state.answers, [AnswerJob(item, CallOff())], [key], "answer"))[0]
    return {**_head("chat.completion", body.model),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": outcome.result.answer},
                         "finish_reason": "stop", "logprobs": None}],
            **_extras(outcome.result, outcome.queue_ms, started, item.question_type)}

"""Request and response bodies of the krqa endpoints (``/answer``, ``/search`` and the probes).

The models are module-level and carry only the limits that never change; the limits a deployment sets
(question length, top_k, batch size) are checked by the endpoints' dependencies (:mod:`krqa.serving.limits`)
and reported in the same 422 shape as a schema error. Unknown fields are rejected: a client can never smuggle
in a file path, a model name or a config key.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from krqa.corpus.document import web_url
from krqa.index.config import Mode
from krqa.qa.data import MC, QAItem, QuestionType, parse_options

SHORT_FIELD_CHARS = 200

_request_ids = itertools.count(1)


class Strict(BaseModel):
    """Unknown fields and loose types are rejected: ``"top_k": "3"`` or ``true`` is a 422, not 3 or 1."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=False)


class AnswerRequest(Strict):
    question: str = Field(min_length=1, description="The question (at most serve.max_question_chars); 선다형 options inline as '1\\t…' after a newline, as in the competition files.")
    question_type: QuestionType
    topic_keyword: str = Field("", max_length=SHORT_FIELD_CHARS, description="Topic keyword; added to the retrieval query.")
    category: str = Field("", max_length=SHORT_FIELD_CHARS, description="Competition category (optional).")
    domain: str = Field("", max_length=SHORT_FIELD_CHARS, description="Competition domain (optional).")
    top_k: Optional[int] = Field(None, ge=1, description="Contexts to retrieve (default: retrieval.top_k; at most retrieval.max_top_k).")
    mode: Optional[Mode] = Field(None, description="Retriever mode (default: retrieval.mode).")
    return_contexts: bool = Field(True, description="Include the retrieved contexts in the response.")
    stream: bool = Field(False, description="Answer as server-sent events: 'delta' events while the answer is generated, then one 'answer' event with this endpoint's usual response (or an 'error' event).")

    @model_validator(mode="after")
    def _parse(self) -> "AnswerRequest":
        if not self.question.strip():
            raise ValueError("question: blank")
        if self.question_type == MC and not parse_options(self.question)[1]:
            raise ValueError("question: 선다형 question without parseable options (put them after a newline as '1\\t… 2\\t…')")
        return self


class AnswerBatchRequest(Strict):
    items: list[AnswerRequest] = Field(min_length=1, description="Questions answered together, in order; at most serve.max_batch_items of them and serve.max_batch_chars characters of question and topic_keyword in all. Streaming is per question (/answer).")

    @model_validator(mode="after")
    def _no_streams(self) -> "AnswerBatchRequest":
        for i, item in enumerate(self.items):
            if item.stream:
                raise ValueError(f"items.{i}.stream: a batch is not streamed; stream single questions through /answer")
        return self


class SearchRequest(Strict):
    query: str = Field(min_length=1, description="Free-text query (at most serve.max_question_chars).")
    top_k: Optional[int] = Field(None, ge=1, description="Hits to return (default: retrieval.top_k; at most retrieval.max_top_k).")
    mode: Optional[Mode] = Field(None, description="Retriever mode (default: retrieval.mode).")

    @model_validator(mode="after")
    def _not_blank(self) -> "SearchRequest":
        if not self.query.strip():
            raise ValueError("query: blank")
        return self


class Context(BaseModel):
    """One retrieved passage as a client sees it; ``url`` is http(s) or empty (an index built before readers
    dropped other schemes may still hold a ``javascript:`` link)."""

    doc_id: str
    title: str
    section: str
    text: str
    score: float
    source: str
    url: str = ""

    @classmethod
    def from_hit(cls, hit: Any) -> "Context":
        return cls(doc_id=str(hit.doc_id), title=hit.title, section=hit.section, text=hit.text,
                   score=float(hit.score), source=hit.source, url=web_url(getattr(hit, "url", "") or ""))


class Timings(BaseModel):
    retrieve: float = Field(description="Milliseconds spent retrieving contexts.")
    generate: float = Field(description="Milliseconds spent generating (shared by the requests of one micro-batch).")
    queue: float = Field(description="Milliseconds waiting for the generation worker.")
    total: float = Field(description="Milliseconds from receiving the request to answering it.")


class Span(BaseModel):
    """The passage span a 단답형 answer was chosen as (generation.sa_mode extract/hybrid)."""

    text: str = Field(description="The winning candidate, exactly as the answer.")
    prob: float = Field(description="Its share of the probability among the candidates scored (softmax of their scores).")
    source: str = Field(description="'passage', or 'generated' / 'generated-span' for the model's own greedy answer (hybrid), as written or snapped to a passage span.")
    candidates: int = Field(description="How many candidates were scored.")

    @classmethod
    def from_result(cls, span: Optional[dict[str, Any]]) -> Optional["Span"]:
        if not span:
            return None
        return cls(text=span["text"], prob=span["prob"], source=span["source"], candidates=len(span["candidates"]))


class AnswerResponse(BaseModel):
    answer: str
    question_type: QuestionType
    contexts: list[Context]
    timings_ms: Timings
    model: str
    adapter: Optional[str]
    option_probs: Optional[list[float]] = Field(None, description="선다형 answered by option scoring: each option's probability, in option order.")
    span: Optional[Span] = Field(None, description="단답형 answered by span extraction: the winning candidate and its probability.")


class AnswerBatchResponse(BaseModel):
    results: list[AnswerResponse]


class SearchResponse(BaseModel):
    query: str
    mode: Mode
    hits: list[Context]
    timings_ms: dict[str, float]


class Health(BaseModel):
    status: Literal["loading", "ready", "error"]
    detail: Optional[str] = None
    model: Optional[str] = None
    adapter: Optional[str] = None
    index_chunks: Optional[int] = None


class ErrorBody(BaseModel):
    message: str
    type: str = Field(description="OpenAI-style error class: invalid_request_error, authentication_error, not_found_error, server_error.")
    param: Optional[str] = Field(None, description="The request field at fault, when one is.")
    code: str = Field(description="Machine-readable reason: invalid_request, queue_full, timeout, model_not_found …")


class ErrorResponse(BaseModel):
    error: ErrorBody


def to_item(req: AnswerRequest) -> QAItem:
    """A request becomes the same QAItem a competition file yields, so option parsing and prompts match predict."""
    return new_item(req.question_type, req.question, req.topic_keyword, req.category, req.domain)


def new_item(question_type: str, question: str, topic_keyword: str = "", category: str = "", domain: str = "") -> QAItem:
    return QAItem(id=f"req-{next(_request_ids)}", category=category, domain=domain, question_type=question_type,
                  topic_keyword=topic_keyword, question=question)

"""Request and response bodies of the HTTP service.

Request models are built per app from the config (``request_models``) so the limits a deployment sets
(question length, top_k, batch size) are enforced by validation and shown in the OpenAPI schema.
Unknown fields are rejected: a client can never smuggle in a file path, a model name or a config key.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from krqa.config import KrqaConfig
from krqa.index.config import Mode
from krqa.qa.data import MC, QAItem, QuestionType, parse_options

_request_ids = itertools.count(1)


class _Strict(BaseModel):
    """Unknown fields and loose types are rejected: ``"top_k": "3"`` or ``true`` is a 422, not 3 or 1."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=False)


class Context(BaseModel):
    """One retrieved passage as a client sees it."""

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
                   score=float(hit.score), source=hit.source, url=getattr(hit, "url", "") or "")


class Timings(BaseModel):
    retrieve: float = Field(description="Milliseconds spent retrieving contexts.")
    generate: float = Field(description="Milliseconds spent generating (shared by the requests of one micro-batch).")
    queue: float = Field(description="Milliseconds waiting for the generation worker.")
    total: float = Field(description="Milliseconds from receiving the request to answering it.")


class AnswerResponse(BaseModel):
    answer: str
    question_type: QuestionType
    contexts: list[Context]
    timings_ms: Timings
    model: str
    adapter: Optional[str]


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
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


@dataclass(frozen=True)
class RequestModels:
    """The config-bound request classes of one app."""

    answer: type[BaseModel]
    batch: type[BaseModel]
    search: type[BaseModel]


def request_models(cfg: KrqaConfig) -> RequestModels:
    """Build request classes whose field limits come from ``serve`` and ``retrieval``."""
    max_chars = cfg.serve.max_question_chars
    max_top_k = cfg.retrieval.max_top_k
    short = 200

    class AnswerRequest(_Strict):
        question: str = Field(min_length=1, max_length=max_chars, description="The question; 선다형 options inline as '1\\t…' after a newline, as in the competition files.")
        question_type: QuestionType
        topic_keyword: str = Field("", max_length=short, description="Topic keyword; added to the retrieval query.")
        category: str = Field("", max_length=short, description="Competition category (optional).")
        domain: str = Field("", max_length=short, description="Competition domain (optional).")
        top_k: Optional[int] = Field(None, ge=1, le=max_top_k, description="Contexts to retrieve (default: retrieval.top_k).")
        mode: Optional[Mode] = Field(None, description="Retriever mode (default: retrieval.mode).")
        return_contexts: bool = Field(True, description="Include the retrieved contexts in the response.")

        @model_validator(mode="after")
        def _parse(self) -> "AnswerRequest":
            if not self.question.strip():
                raise ValueError("question: blank")
            if self.question_type == MC and not parse_options(self.question)[1]:
                raise ValueError("question: 선다형 question without parseable options (put them after a newline as '1\\t… 2\\t…')")
            return self

    max_batch_chars = cfg.serve.max_batch_chars

    class AnswerBatchRequest(_Strict):
        items: list[AnswerRequest] = Field(min_length=1, max_length=cfg.serve.max_batch_items, description=f"Questions answered together, in order; at most {max_batch_chars} characters of question and topic_keyword in all.")

        @model_validator(mode="after")
        def _total(self) -> "AnswerBatchRequest":
            total = sum(len(item.question) + len(item.topic_keyword) for item in self.items)
            if total > max_batch_chars:
                raise ValueError(f"items: {total} characters of question and topic_keyword in all, over serve.max_batch_chars={max_batch_chars}")
            return self

    class SearchRequest(_Strict):
        query: str = Field(min_length=1, max_length=max_chars, description="Free-text query.")
        top_k: Optional[int] = Field(None, ge=1, le=max_top_k, description="Hits to return (default: retrieval.top_k).")
        mode: Optional[Mode] = Field(None, description="Retriever mode (default: retrieval.mode).")

        @model_validator(mode="after")
        def _not_blank(self) -> "SearchRequest":
            if not self.query.strip():
                raise ValueError("query: blank")
            return self

    return RequestModels(answer=AnswerRequest, batch=AnswerBatchRequest, search=SearchRequest)


def to_item(req: Any) -> QAItem:
    """A request becomes the same QAItem a competition file yields, so option parsing and prompts match predict."""
    return QAItem(
        id=f"req-{next(_request_ids)}",
        category=req.category,
        domain=req.domain,
        question_type=req.question_type,
        topic_keyword=req.topic_keyword,
        question=req.question,
    )

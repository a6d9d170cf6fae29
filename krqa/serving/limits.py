"""A deployment's request limits, checked by FastAPI dependencies after the schema has validated the body.

The request models are module-level (one class per endpoint, whatever the config), so the limits that come from
the config live here. A violation is raised as a :class:`RequestValidationError` with pydantic's own wording and
the field's location, so a client sees one 422 shape whether the schema or the deployment refused the request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

from fastapi.exceptions import RequestValidationError

from krqa.serving.config import ServeConfig
from krqa.serving.schemas import AnswerBatchRequest, AnswerRequest, SearchRequest

Loc = tuple[str | int, ...]


def too_long(loc: Loc, limit: int, what: str = "String", unit: str = "characters") -> dict[str, Any]:
    return {"type": "too_long", "loc": ("body", *loc), "msg": f"{what} should have at most {limit} {unit}"}


def too_big(loc: Loc, limit: int) -> dict[str, Any]:
    return {"type": "less_than_equal", "loc": ("body", *loc), "msg": f"Input should be less than or equal to {limit}"}


@dataclass(frozen=True)
class Limits:
    """``question_chars`` bounds a question or query, ``top_k`` a retrieval depth, ``batch_items`` and
    ``batch_chars`` one /answer/batch call."""

    question_chars: int
    top_k: int
    batch_items: int
    batch_chars: int

    @classmethod
    def of(cls, serve: ServeConfig, max_top_k: int) -> "Limits":
        return cls(question_chars=serve.max_question_chars, top_k=max_top_k,
                   batch_items=serve.max_batch_items, batch_chars=serve.max_batch_chars)

    def text(self, loc: Loc, value: str) -> list[dict[str, Any]]:
        return [too_long(loc, self.question_chars)] if len(value) > self.question_chars else []

    def depth(self, loc: Loc, value: Optional[int]) -> list[dict[str, Any]]:
        return [too_big(loc, self.top_k)] if value is not None and value > self.top_k else []

    def answer(self, body: AnswerRequest, loc: Loc = ()) -> list[dict[str, Any]]:
        return [*self.text((*loc, "question"), body.question), *self.depth((*loc, "top_k"), body.top_k)]

    def batch(self, body: AnswerBatchRequest) -> list[dict[str, Any]]:
        n = len(body.items)
        if n > self.batch_items:
            return [too_long(("items",), self.batch_items, "List", f"items after validation, not {n}")]
        errors = [e for i, item in enumerate(body.items) for e in self.answer(item, ("items", i))]
        total = sum(len(item.question) + len(item.topic_keyword) for item in body.items)
        if total > self.batch_chars:
            errors.append({"type": "value_error", "loc": ("body",),
                           "msg": f"items: {total} characters of question and topic_keyword in all, over serve.max_batch_chars={self.batch_chars}"})
        return errors

    def search(self, body: SearchRequest) -> list[dict[str, Any]]:
        return [*self.text(("query",), body.query), *self.depth(("top_k",), body.top_k)]


def enforce(errors: Sequence[dict[str, Any]]) -> None:
    """Refuse the request (422) when any limit was exceeded."""
    if errors:
        raise RequestValidationError(list(errors))

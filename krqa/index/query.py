"""Competition items -> retrieval queries.

선다형 stems carry inline option markup (``\\n 1\\t…``) that would only add noise terms; the parsed stem is
used instead, plus the topic keyword (often the entity the passage is about), plus the options either
appended to one query or as one sub-query each, whose results the retriever merges.
"""

from __future__ import annotations

import re

from krqa.index.config import QueryConfig
from krqa.qa.data import QAItem

_SPACE = re.compile(r"\s+")


def _clean(text: str) -> str:
    return _SPACE.sub(" ", text.replace("\\n", " ").replace("\\t", " ")).strip()


def build_queries(item: QAItem, cfg: QueryConfig) -> list[str]:
    """One query, or one per option when ``cfg.options == 'per_option'`` and the item has options."""
    base = _clean(item.stem or item.question)
    topic = _clean(item.topic_keyword) if cfg.use_topic_keyword else ""
    if topic and topic not in base:
        base = f"{base} {topic}".strip()
    options = [o for o in (_clean(o) for o in item.options) if o]
    if options and cfg.options == "append":
        return [f"{base} {' '.join(options)}".strip()]
    if options and cfg.options == "per_option":
        return [f"{base} {opt}".strip() for opt in options]
    return [base]

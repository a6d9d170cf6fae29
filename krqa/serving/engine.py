"""What the service loads once at start-up: the answerer (model + adapter + prompts) and the retriever."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Protocol

from krqa.config import KrqaConfig
from krqa.errors import InputError
from krqa.qa.data import QAItem
from krqa.wiring import load_generator, make_answerer, open_index

log = logging.getLogger(__name__)


class AnswersItems(Protocol):
    def answer_items(self, items: list[QAItem], rag: bool = True, top_k: int | None = None,
                     mode: str | None = None) -> list[Any]: ...


def public_name(name: str | None, keep: int = 3) -> str | None:
    """A model or adapter name fit for unauthenticated responses: a local path loses everything but its last
    ``keep`` components (``demo/stage2/adapter``), so the server's directory layout is not disclosed."""
    if name is None or not PurePath(name).is_absolute():
        return name
    parts = PurePath(name).parts[1:]
    return "/".join(parts[-keep:])


@dataclass
class Engine:
    """The loaded pieces; ``retriever`` is None when RAG is off and no index is configured. ``model_name``
    and ``adapter`` are the public names (see :func:`public_name`) the responses show."""

    answerer: AnswersItems
    retriever: Any | None
    model_name: str
    adapter: str | None


def load_engine(cfg: KrqaConfig) -> Engine:
    """Load the same Answerer that ``krqa predict`` uses, so the service's answers equal the prediction file's.

    The retriever is required when ``predict.rag`` is on; with RAG off a missing index only disables /search.
    """
    retriever = None
    try:
        retriever = open_index(cfg)
    except InputError as err:
        if cfg.predict.rag:
            raise
        log.warning("no index, /search disabled (RAG is off): %s", err)
    generator = load_generator(cfg, cfg.model.adapter, streaming=True, backend=cfg.serve.backend)
    answerer = make_answerer(cfg, retriever, generator)
    log.info("serving model %s with adapter %s", generator.model_name, generator.adapter)
    return Engine(answerer=answerer, retriever=retriever, model_name=public_name(str(generator.model_name), keep=2) or "",
                  adapter=public_name(generator.adapter))

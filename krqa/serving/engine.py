"""What the service loads once at start-up: the answerer (model + adapter + prompts) and the retriever."""

from __future__ import annotations

import hashlib
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


def public_name(name: str | None) -> str | None:
    """A model or adapter name fit for unauthenticated responses: a hub id stays as it is; a local path becomes
    its last component and a short hash of the whole path (``adapter-3f2a9c1e``), so the server's directory
    layout is not disclosed and two adapters of the same name stay apart."""
    if name is None or not PurePath(name).is_absolute():
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    return f"{PurePath(name).name}-{digest}"


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
    return Engine(answerer=answerer, retriever=retriever, model_name=public_name(str(generator.model_name)) or "",
                  adapter=public_name(generator.adapter))

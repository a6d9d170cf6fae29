"""The composition root: the root config in, the library's pieces out.

Library functions take the config section or the plain values they need (``open_retriever(index_dir,
retrieval, dense)``, ``make_generator(model, generation, adapter)``, ``Answerer(..., prompt=, generation=)``); the
CLI, the demo, the ablation harness, the training orchestration (sampling, generation eval, context retrieval),
``predict`` and the serving bootstrap hold a :class:`KrqaConfig` and get every retriever, generator and answerer
from these few functions, so which section feeds which argument is written once and nothing else builds them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from krqa.config import KrqaConfig
from krqa.errors import InputError
from krqa.generation.answerer import Answerer
from krqa.generation.base import Generator
from krqa.generation.factory import make_generator
from krqa.generation.predict import predict
from krqa.index.types import SearchParams

if TYPE_CHECKING:
    from krqa.index.retriever import IndexRetriever
    from krqa.index.types import Retriever


def open_index(cfg: KrqaConfig, index_dir: str | os.PathLike[str] | None = None) -> IndexRetriever:
    """The retriever over ``index_dir`` (default ``index.dir``) searching as ``retrieval`` says."""
    from krqa.index.retriever import open_retriever  # start-up time: it imports faiss, bm25s and the encoders

    return open_retriever(index_dir if index_dir is not None else cfg.index.dir, cfg.retrieval, cfg.index.dense)


def open_index_for_rag(cfg: KrqaConfig, config_hint: str = "<your config>") -> IndexRetriever:
    """The retriever RAG needs, with a message that says how to build a missing index."""
    try:
        return open_index(cfg)
    except InputError as err:
        raise InputError(f"--rag needs an index: {err} (build it with: krqa build-index --config {config_hint}, or run with --no-rag)") from None


def load_generator(cfg: KrqaConfig, adapter: str | None = None, *, streaming: bool = False, **generation: Any) -> Generator:
    """The ``generation.backend`` engine on ``model`` with ``adapter`` (default ``model.adapter``; '' for none).
    ``generation`` overrides fields of the generation section for this engine: the service's ``backend``, the
    trainer's transformers-only evaluation, the sampler's ``temperature`` and ``top_p``."""
    section = cfg.generation.model_copy(update=generation) if generation else cfg.generation
    return make_generator(cfg.model, section, adapter, streaming=streaming)


def make_answerer(cfg: KrqaConfig, retriever: Retriever | None, generator: Generator) -> Answerer:
    """The one ``Answerer`` of predict, serve, ablate and training's evaluation, on the given engine and index."""
    return Answerer(retriever, generator, prompt=cfg.prompt, generation=cfg.generation, rag_types=cfg.predict.rag_types,
                    min_score=cfg.retrieval.min_score)


def resolve_adapter(cfg: KrqaConfig, adapter: str | None) -> str | None:
    """The adapter directory to use: ``adapter`` ('' for none), else ``model.adapter``; a relative ``adapter`` is the
    working directory's first, then the project's."""
    if adapter is None:
        adapter = cfg.model.adapter
    if not adapter:
        return None
    path = Path(adapter) if Path(adapter).is_dir() else cfg.resolve_path(adapter)
    if not path.is_dir():
        raise InputError(f"--adapter {adapter}: directory not found")
    return str(path)


def run_predict(cfg: KrqaConfig, input_path: Path, output: Path, *, adapter: str | None = None, limit: int | None = None,
                search: SearchParams | None = None, resume: bool = True, strict: bool = False,
                config_hint: str = "<your config>") -> dict[str, Any]:
    """``krqa predict`` on a config whose sections already carry the command's settings (``--rag``, ``--backend``);
    ``search`` is the per-question top_k and mode."""
    retriever = open_index_for_rag(cfg, config_hint) if cfg.predict.rag else None
    adapter_dir = resolve_adapter(cfg, adapter)

    def answerer() -> Answerer:
        return make_answerer(cfg, retriever, load_generator(cfg, adapter_dir or ""))  # "": no adapter, even if configured

    return predict(Path(input_path), Path(output), model=cfg.model, generation=cfg.generation, prompt=cfg.prompt, settings=cfg.predict,
                   retrieval=cfg.retrieval, retriever=retriever, adapter=adapter_dir, answerer=answerer, search=search or SearchParams(),
                   limit=limit, resume=resume, strict=strict)

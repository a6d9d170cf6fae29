"""Retrieved contexts for stage 2, fetched once in a batch and cached beside the run.

Stage 2 must see what ``predict`` will see, so it calls the same ``search_items`` on the same index. Retrieval
over a full dump is the slow part of a restart, so the hits are cached with a hash of everything that decides
them (index manifest, retrieval settings, the questions); a cache whose hash differs is recomputed, never reused.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from krqa.fsutil import atomic_write_json, json_sha, load_keyed_json
from krqa.generation.answerer import gate
from krqa.index.types import Hit, Retriever
from krqa.qa.data import MC, QAItem
from krqa.wiring import open_index

if TYPE_CHECKING:
    from krqa.config import KrqaConfig

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


def items_hash(items: list[QAItem]) -> str:
    """Only what the query builder can read goes in: ids, types, keywords and question texts."""
    return json_sha([[i.id, i.question_type, i.topic_keyword, i.question] for i in items])


def cache_key(manifest: dict[str, Any], retrieval: dict[str, Any], items: list[QAItem], top_k: int) -> dict[str, str]:
    manifest_sha = json_sha(manifest)
    items_sha = items_hash(items)
    return {
        "index_manifest_sha256": manifest_sha,
        "items_sha256": items_sha,
        "sha256": json_sha({"format": CACHE_FORMAT, "manifest": manifest_sha, "items": items_sha, "retrieval": retrieval, "top_k": top_k}),
    }


def load_cache(path: Path, expected: str) -> dict[str, list[dict[str, Any]]] | None:
    """The cached hits when the file is intact and its hash matches, else None (so the caller recomputes)."""
    return load_keyed_json(path, expected, "contexts", "context cache", "retrieving again")


def _to_hits(raw: dict[str, list[dict[str, Any]]]) -> dict[str, list[Hit]]:
    fields = set(Hit.__dataclass_fields__)
    return {item_id: [Hit(**{k: v for k, v in h.items() if k in fields}) for h in rows] for item_id, rows in raw.items()}


def read_cache(path: Path) -> tuple[dict[str, list[Hit]], dict[str, Any]]:
    """The cache another process just wrote (multi-GPU runs retrieve on the main process only)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    info = {k: data[k] for k in ("index_manifest_sha256", "items_sha256", "sha256", "top_k")}
    return _to_hits(data["contexts"]), {**info, "path": str(path), "reused": True, "items": len(data["contexts"])}


def retrieve_contexts(
    cfg: KrqaConfig, items: list[QAItem], cache_path: Path, top_k: int, retriever: Retriever | None = None
) -> tuple[dict[str, list[Hit]], dict[str, Any]]:
    """Hits per item id (top ``top_k``) and a record of the cache: its hashes and whether it was reused."""
    retriever = retriever if retriever is not None else open_index(cfg)
    key = cache_key(retriever.manifest.to_json(), cfg.retrieval.model_dump(mode="json"), items, top_k)
    cached = load_cache(cache_path, key["sha256"])
    reused = cached is not None and all(i.id in cached for i in items)
    if reused:
        raw = cached
    else:
        log.info("retrieving top-%d contexts for %d questions", top_k, len(items))
        results = retriever.search_items(items, top_k=top_k)
        raw = {item.id: [h.to_json() for h in hits] for item, hits in zip(items, results)}
        atomic_write_json(cache_path, {"format": CACHE_FORMAT, **key, "top_k": top_k, "contexts": raw}, indent=None)
    return _to_hits(raw), {**key, "path": str(cache_path), "reused": reused, "top_k": top_k, "items": len(items)}


def usable_hits(cfg: KrqaConfig, hits: dict[str, list[Hit]], items: list[QAItem]) -> dict[str, list[Hit]]:
    """What predict would put in each prompt: nothing for types outside ``predict.rag_types``, only passages at or
    above ``retrieval.min_score``, and for 선다형 option scoring at most ``generation.mc_max_passages``."""
    rag_types = set(cfg.predict.rag_types)
    mc_cap = cfg.generation.mc_max_passages if cfg.generation.mc_mode == "score" else None

    def usable(item: QAItem) -> list[Hit]:
        if item.question_type not in rag_types:
            return []
        kept = gate(hits[item.id], cfg.retrieval.min_score)[0]
        return kept[:mc_cap] if item.question_type == MC and mc_cap is not None else kept

    return {i.id: usable(i) for i in items}

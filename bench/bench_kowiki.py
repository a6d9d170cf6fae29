"""The whole-Korean-Wikipedia index on this machine: how fast it opens and answers, and what workers buy.

    python bench/bench_kowiki.py --index /path/to/kowiki-index            # open time and BM25 query latency
    python bench/bench_kowiki.py --slice ../shared/data/kowiki_2022/text/AJ.xz --runs 1   # -w 1 vs -w 2 build

Open: ``open_retriever`` in a fresh process (median of ``--runs``), which is what `krqa search` and `krqa serve`
pay at start. Queries: the NIKL train+dev questions as predict builds them (question + topic keyword), BM25 only,
one pass to warm the page cache, then medians/percentiles of ``--runs`` timed passes; the ratio column compares
p50 with the 50 ms goal. The build part times `krqa build-index` on one slice with 1 and 2 workers (BM25 only)
and prints the ratio from the same run. The whole-dump build itself is timed with ``/usr/bin/time -v`` (README).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NIKL = ROOT.parent / "shared" / "data" / "nikl_culture_qa"
OPEN_SNIPPET = """
import json, sys, time
t = time.perf_counter()
from krqa.config import load_config
from krqa.index.retriever import open_retriever
cfg = load_config(None)
r = open_retriever(sys.argv[1], cfg.retrieval.model_copy(update={"mode": "bm25"}), cfg.index.dense.model_copy(update={"backend": "none"}))
print(json.dumps({"open_s": time.perf_counter() - t}))
"""


def open_seconds(index: Path, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-c", OPEN_SNIPPET, str(index)], capture_output=True, text=True, check=True, cwd=ROOT)
        out.append(json.loads(proc.stdout.strip().splitlines()[-1])["open_s"])
    return out


def query_latency(index: Path, runs: int) -> dict[str, float]:
    from krqa.config import load_config
    from krqa.index.query import build_queries
    from krqa.index.retriever import open_retriever
    from krqa.qa.data import load_items

    cfg = load_config(None)
    retriever = open_retriever(index, cfg.retrieval.model_copy(update={"mode": "bm25"}), cfg.index.dense.model_copy(update={"backend": "none"}))
    items = [it for split in ("train", "dev") for it in load_items(NIKL / f"korean_culture_qa_V1.0_{split}+.json")]
    queries = [build_queries(it, cfg.retrieval.query)[0] for it in items]
    for q in queries:  # warm: page cache, Kiwi's word cache
        retriever.search(q, top_k=5, mode="bm25")
    per_query: list[float] = []
    for _ in range(runs):
        for q in queries:
            t = time.perf_counter()
            retriever.search(q, top_k=5, mode="bm25")
            per_query.append(time.perf_counter() - t)
    per_query.sort()
    return {"queries": len(queries), "p50_ms": 1000 * statistics.median(per_query), "p95_ms": 1000 * per_query[int(0.95 * (len(per_query) - 1))],
            "max_ms": 1000 * per_query[-1]}


def build_seconds(corpus: Path, workers: int, analysis: str) -> float:
    with tempfile.TemporaryDirectory(prefix="krqa-bench-kowiki-") as tmp:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "krqa", "-q", "build-index", "-c", "configs/kowiki-cpu.yaml", "--corpus", str(corpus),
                        "--out", f"{tmp}/index", "-w", str(workers), "--set", f"index.bm25.analysis={analysis}"], check=True, cwd=ROOT)
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, help="a built index to open and query")
    ap.add_argument("--slice", type=Path, help="a wikiextractor file or folder to build with 1 and 2 workers")
    ap.add_argument("--analysis", default="words", choices=["text", "words"])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if args.index:
        opens = open_seconds(args.index, args.runs)
        lat = query_latency(args.index, args.runs)
        print("| index | open, median of %d (s) | queries | BM25 p50 (ms) | p95 (ms) | max (ms) | p50 / 50 ms goal |" % args.runs)
        print("|---|--:|--:|--:|--:|--:|--:|")
        print(f"| {args.index.name} | {statistics.median(opens):.2f} | {lat['queries']} | {lat['p50_ms']:.1f} | {lat['p95_ms']:.1f} | "
              f"{lat['max_ms']:.1f} | {lat['p50_ms'] / 50:.2f}x |")
    if args.slice:
        rows = {w: [build_seconds(args.slice, w, args.analysis) for _ in range(args.runs)] for w in (1, 2)}
        one, two = statistics.median(rows[1]), statistics.median(rows[2])
        print(f"\n| slice | analysis | -w 1 (s) | -w 2 (s) | -w 1 / -w 2 |\n|---|---|--:|--:|--:|\n"
              f"| {args.slice.name} | {args.analysis} | {one:.1f} | {two:.1f} | {one / two:.2f}x |")


if __name__ == "__main__":
    main()

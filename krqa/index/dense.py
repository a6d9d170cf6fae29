"""FAISS indexes over normalised embeddings: exact (Flat), graph (HNSW) and compressed (IVF-PQ).

Inner product on unit vectors is cosine similarity. With ``store_fp16`` Flat and HNSW keep their vectors as
float16 (scalar quantiser): half the disk and RAM, ranks practically unchanged. Loading memory-maps the
stored codes where FAISS supports it, so opening a large index is fast and its pages are shared.
"""

from __future__ import annotations

import functools
import logging
import os

import faiss
import numpy as np

from krqa.errors import InputError
from krqa.index.config import FaissConfig

log = logging.getLogger(__name__)


def gpu_available(cfg: FaissConfig) -> bool:
    if cfg.use_gpu == "no":
        return False
    has = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    if cfg.use_gpu == "yes" and not has:
        raise InputError("index.dense.faiss.use_gpu=yes but faiss-gpu or a visible GPU is missing; install faiss-gpu or set use_gpu: auto")
    return has


@functools.lru_cache(maxsize=1)
def _gpu_resources():
    """One per process, kept alive here: a GPU index only points at its resources, and FAISS advises
    sharing them rather than allocating scratch memory per index."""
    return faiss.StandardGpuResources()


def _pq_m(dim: int, wanted: int) -> int:
    """Largest divisor of ``dim`` not above ``wanted``: PQ splits the vector into equal sub-vectors."""
    m = max(1, min(wanted, dim))
    while dim % m:
        m -= 1
    if m != wanted:
        log.warning("faiss.pq_m=%d does not divide dimension %d; using %d", wanted, dim, m)
    return m


def _new_index(dim: int, n: int, cfg: FaissConfig):
    ip = faiss.METRIC_INNER_PRODUCT
    fp16 = faiss.ScalarQuantizer.QT_fp16
    if cfg.type == "flat":
        return faiss.IndexScalarQuantizer(dim, fp16, ip) if cfg.store_fp16 else faiss.IndexFlatIP(dim)
    if cfg.type == "hnsw":
        index = faiss.IndexHNSWSQ(dim, fp16, cfg.hnsw_m, ip) if cfg.store_fp16 else faiss.IndexHNSWFlat(dim, cfg.hnsw_m, ip)
        index.hnsw.efConstruction = cfg.ef_construction
        return index
    # IVF-PQ: k-means needs ~39 points per cell, PQ codebooks 2^nbits points; shrink both for small corpora.
    nlist = max(1, min(cfg.ivf_nlist, n // 39))
    nbits = 8 if n >= 256 else max(1, int(np.log2(max(n, 2))))
    quantizer = faiss.IndexFlatIP(dim)
    return faiss.IndexIVFPQ(quantizer, dim, nlist, _pq_m(dim, cfg.pq_m), nbits, ip)


def build_faiss(vectors: np.ndarray, cfg: FaissConfig, block: int = 65536, seed: int = 0):
    """Build from an (n, dim) array (a memmap is fine: it is read in blocks); IVF is trained on a sample."""
    n, dim = vectors.shape
    faiss.omp_set_num_threads(_omp_threads())  # a search may have capped them
    index = _new_index(dim, n, cfg)
    use_gpu = gpu_available(cfg) and cfg.type != "hnsw"  # FAISS has no GPU HNSW
    work = index
    if use_gpu:
        work = faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)
    if not work.is_trained:
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=min(n, cfg.train_sample), replace=False))
        work.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
    for start in range(0, n, block):
        work.add(np.ascontiguousarray(vectors[start:start + block], dtype=np.float32))
    return faiss.index_gpu_to_cpu(work) if use_gpu else work


def write_faiss(index, path: str | os.PathLike[str]) -> None:
    faiss.write_index(index, str(path))


def read_faiss(path: str | os.PathLike[str], cfg: FaissConfig):
    """Memory-mapped read; query-time knobs (efSearch, nprobe) come from the current config."""
    try:
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError:
        index = faiss.read_index(str(path))
    inner = faiss.downcast_index(index)
    if hasattr(inner, "hnsw"):
        inner.hnsw.efSearch = cfg.ef_search
    if hasattr(inner, "nprobe"):
        inner.nprobe = cfg.nprobe
    if cfg.type != "hnsw" and gpu_available(cfg):
        index = faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)
    return index


@functools.lru_cache(maxsize=1)
def _omp_threads() -> int:
    return faiss.omp_get_max_threads()


def search_faiss(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, scores), each (n_queries, k); slots FAISS could not fill have id -1.

    FAISS spreads a search over queries, so one query uses one thread anyway, but the idle OpenMP threads
    still spin at the barrier: on a busy 2-core machine that turned a 0.05 ms flat search into 10 ms.
    Threads are therefore capped at the number of queries (a global FAISS setting, reset on every call).
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    k = max(1, min(k, index.ntotal))
    faiss.omp_set_num_threads(max(1, min(q.shape[0], _omp_threads())))
    scores, ids = index.search(q, k)
    return ids.astype(np.int64), scores

"""``build_index``: corpus -> chunk store -> BM25 -> embeddings -> FAISS -> manifest, crash-safe and resumable.

Everything is built in ``<out>.partial/`` and swapped onto ``<out>`` only once the manifest is written, so a
build killed at any moment leaves the previous index untouched plus a partial that ``resume=True`` picks up.
``<out>`` must be new, empty or a krqa index, and ``<out>.partial`` an unfinished krqa build: krqa never
deletes a directory it did not make. A finished partial is installed by ``--resume`` only when it was built
from the same corpus and config (its manifest records the build fingerprint).
Finished stages are recorded in ``build_state.json``; embeddings go batch by batch into a memory-mapped
``.npy`` whose progress file is updated only after the batch is flushed, so a resumed build re-encodes at
most one batch. Encoding is the expensive step (hours of GPU on a full dump); everything else is minutes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from krqa import __version__
from krqa.corpus.config import CorpusConfig, SourceConfig
from krqa.corpus.fileio import source_digest
from krqa.corpus.parallel import PieceMap
from krqa.corpus.pipeline import build_chunks, read_kept
from krqa.corpus.store import load_chunks
from krqa.errors import InputError, KrqaError
from krqa.fsutil import atomic_path, atomic_write_json, check_output_dir, json_sha, replace_dir
from krqa.index import manifest as mf
from krqa.index.bm25_build import merge_shards, shard_name
from krqa.index.config import BM25Config, DenseConfig, FaissConfig, IndexConfig
from krqa.index.encoders import Encoder, make_encoder
from krqa.log import progress_disabled

log = logging.getLogger(__name__)


class BuildEngine(Protocol):
    """Where the parallel stages run; the local default is worker processes on this machine."""

    piece_map: PieceMap

    def encode(self, store_dir: Path, n: int, cfg: DenseConfig, dense_dir: Path, name: str, dim: int) -> None:
        """Write ``dense_dir/embeddings.npy`` (n x dim), keeping finished shards of an interrupted run."""

STATE_FILE = "build_state.json"
PROGRESS_FILE = "progress.json"
BUFFER_FILE = "embeddings.npy.partial"
SHARDS_DIR = "bm25_shards"


def _fingerprint(corpus: CorpusConfig, index: IndexConfig, sources: list[SourceConfig]) -> str:
    """What a resumed build must share with the interrupted one: the config and the dumps' contents (sha256, as
    the manifest records them; a dump replaced by another of the same size and mtime, as ``cp -p`` or rsync
    leave it, is a different corpus)."""
    files = []
    for s in sources:
        path = Path(s.path)
        files.append([str(path), s.format, s.limit, source_digest(path)[1] if path.exists() else None])
    payload = {"index": index.model_dump(mode="json", exclude={"dir"}), "chunking": corpus.chunking.model_dump(mode="json"), "sources": files}
    return json_sha(payload)


class _State:
    def __init__(self, root: Path, fingerprint: str) -> None:
        self.path = root / STATE_FILE
        self.data: dict[str, Any] = {"fingerprint": fingerprint, "done": [], "seconds": {}}

    @classmethod
    def resume(cls, root: Path, fingerprint: str) -> _State:
        state = cls(root, fingerprint)
        if state.path.is_file():
            data = json.loads(state.path.read_text(encoding="utf-8"))
            if data.get("fingerprint") != fingerprint:
                raise InputError(f"{root}: the unfinished build used another config or corpus; run without --resume to start over")
            state.data = data
        return state

    def done(self, stage: str) -> bool:
        return stage in self.data["done"]

    def add_seconds(self, stage: str, seconds: float) -> None:
        self.data["seconds"][stage] = round(self.data["seconds"].get(stage, 0.0) + seconds, 3)
        self.save()

    def finish(self, stage: str) -> None:
        self.data["done"].append(stage)
        self.save()

    def save(self) -> None:
        atomic_write_json(self.path, self.data)


def build_index(
    corpus: CorpusConfig,
    index: IndexConfig,
    out_dir: str | os.PathLike[str] | None = None,
    corpus_paths: list[str | os.PathLike[str]] | None = None,
    resume: bool = False,
    encoder: Encoder | None = None,
    workers: int | None = None,
    engine: BuildEngine | None = None,
) -> mf.IndexManifest:
    """Build (or with ``resume`` continue) the index in ``out_dir`` (default ``index.dir``) from the files
    ``corpus_paths`` (default ``corpus.sources``) and return its manifest.

    ``workers`` processes (default ``corpus.workers``; 0 = all cores) read, chunk and tokenize in parallel;
    the index is the same for any count. An ``engine`` (Ray: :mod:`krqa.index.ray_build`) runs those stages
    and the encoding on a cluster instead; the files it leaves are the same.

    ``encoder`` replaces the configured one (benchmarks pass a caching wrapper; tests inject failures); it
    must report the same name as the configured encoder or the index would not open with this config.
    """
    out = Path(out_dir if out_dir is not None else index.dir)
    sources = [SourceConfig(path=str(Path(p).resolve())) for p in corpus_paths] if corpus_paths else list(corpus.sources)
    if not sources:
        raise InputError("corpus.sources is empty: add a source to the config or pass --corpus PATH")
    check_output_dir(out, mf.foreign_content, "index")
    partial = out.with_name(out.name + ".partial")
    fingerprint = _fingerprint(corpus, index, sources)
    if partial.exists() or partial.is_symlink():
        _check_partial(partial)
        if not resume:
            log.info("discarding the unfinished build in %s (pass --resume to continue it)", partial)
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    if (partial / mf.MANIFEST_FILE).is_file():
        finished = mf.read_manifest(partial)
        if finished.build_fingerprint != fingerprint:
            raise InputError(f"{partial}: the finished build there was made from another corpus or config; "
                             "run without --resume to rebuild")
        return _swap_in(partial, out)
    state = _State.resume(partial, fingerprint)
    state.save()
    started = time.perf_counter()

    if not state.done("corpus"):
        t = time.perf_counter()
        shutil.rmtree(partial / SHARDS_DIR, ignore_errors=True)
        build_chunks(corpus, partial / mf.CHUNKS_DIR, sources=sources, workers=workers, piece_map=engine.piece_map if engine else None,
                     token_model=index.dense.model, bm25=index.bm25, shard_dir=partial / SHARDS_DIR)
        state.add_seconds("corpus", time.perf_counter() - t)
        state.finish("corpus")

    store = load_chunks(partial / mf.CHUNKS_DIR)
    n = len(store)

    if not state.done("bm25"):
        t = time.perf_counter()
        merge_bm25(partial / SHARDS_DIR, index.bm25, partial)
        shutil.rmtree(partial / SHARDS_DIR)
        state.add_seconds("bm25", time.perf_counter() - t)
        state.finish("bm25")

    enc_info = None
    dense = index.dense
    if dense.backend != "none":
        encoder = encoder or make_encoder(dense)
        assert encoder is not None
        enc_info = mf.EncoderInfo(backend=dense.backend, name=encoder.name, dim=int(encoder.dim))
        if not state.done("encode"):
            if engine is not None:
                t = time.perf_counter()
                engine.encode(partial / mf.CHUNKS_DIR, n, dense, partial / mf.DENSE_DIR, encoder.name, int(encoder.dim))
                state.add_seconds("encode", time.perf_counter() - t)
            else:
                _encode(dense, store, partial, state, encoder)
            state.finish("encode")
        if not state.done("faiss"):
            _build_faiss(dense.faiss, partial, state)
            state.finish("faiss")

    report = json.loads((partial / mf.CHUNKS_DIR / "corpus_report.json").read_text(encoding="utf-8"))
    seconds = dict(state.data["seconds"])
    (partial / STATE_FILE).unlink()
    write_manifest(partial, corpus, index, sources, report["sources"], n, enc_info, seconds, time.perf_counter() - started,
                   build_fingerprint=fingerprint)
    return _swap_in(partial, out)


def _check_partial(partial: Path) -> None:
    """``<out>.partial`` is krqa's when it is an empty directory, holds a build state that parses as krqa's, or
    is a finished index (a manifest of krqa's that lists every file there); anything else is never deleted."""
    if partial.is_dir() and not partial.is_symlink():
        if not any(partial.iterdir()) or _is_build_state(partial / STATE_FILE):
            return
        if (partial / mf.MANIFEST_FILE).is_file() and mf.foreign_content(partial) is None:
            return
    raise InputError(f"{partial}: exists but is not an unfinished krqa build (no krqa {STATE_FILE} or {mf.MANIFEST_FILE}); "
                     "refusing to delete it: move it away or choose another --out")


def _is_build_state(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return (isinstance(data, dict) and isinstance(data.get("fingerprint"), str) and isinstance(data.get("done"), list)
            and isinstance(data.get("seconds"), dict))


def write_manifest(root: Path, corpus: CorpusConfig, index: IndexConfig, sources: list[SourceConfig], source_reports: list[dict[str, Any]],
                   n: int, enc_info: mf.EncoderInfo | None, seconds: dict[str, float], run_seconds: float,
                   build_fingerprint: str | None = None) -> mf.IndexManifest:
    """Written last, over the finished files (their sizes are recorded for the load-time check)."""
    bm25 = index.bm25
    manifest = mf.IndexManifest(
        format_version=mf.FORMAT_VERSION,
        krqa_version=__version__,
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        build_seconds=round(sum(seconds.values()), 3),
        stage_seconds=seconds,
        this_run_seconds=round(run_seconds, 3),
        config={"index": index.model_dump(mode="json"), "chunking": corpus.chunking.model_dump(mode="json"),
                "sources": [s.model_dump(mode="json") for s in sources]},
        sources=[mf.SourceRecord.model_validate({k: s.get(k) for k in mf.SourceRecord.model_fields}) for s in source_reports],
        chunk_count=n,
        encoder=enc_info,
        bm25={"method": bm25.method, "k1": bm25.k1, "b": bm25.b, "delta": bm25.delta, "tags": bm25.tags, "lemma": bm25.lemma},
        faiss={"type": index.dense.faiss.type, "fp16": index.dense.faiss.store_fp16} if enc_info else None,
        build_fingerprint=build_fingerprint,
        files=mf.file_sizes(root),
    )
    atomic_write_json(root / mf.MANIFEST_FILE, manifest.to_json())
    return manifest


def _swap_in(partial: Path, out: Path) -> mf.IndexManifest:
    """Atomic exchange of the finished partial and the previous index, whose files are then removed."""
    replace_dir(partial, out)
    manifest = mf.read_manifest(out)
    log.info("index ready in %s: %d chunks, stages %s", out, manifest.chunk_count, manifest.stage_seconds)
    return manifest


def merge_bm25(shard_dir: Path, bm25_cfg: BM25Config, partial: Path) -> None:
    """Merge the corpus stage's shards into ``<partial>/bm25`` through a temporary directory (a crash leaves no
    half index)."""
    kept = read_kept(shard_dir)
    paths = [shard_dir / shard_name(i) for i in range(len(kept))]
    present = [i for i, p in enumerate(paths) if p.is_file()]  # a piece with no chunk writes no shard
    tmp = partial / (mf.BM25_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    merge_shards([paths[i] for i in present], bm25_cfg, tmp, kept=[kept[i] for i in present])
    shutil.rmtree(partial / mf.BM25_DIR, ignore_errors=True)
    os.replace(tmp, partial / mf.BM25_DIR)


def _encode(dense: DenseConfig, store, partial: Path, state: _State, encoder: Encoder) -> None:
    n, dim, bs = len(store), int(encoder.dim), dense.batch_size
    dtype = np.float16 if dense.faiss.store_fp16 else np.float32
    dense_dir = partial / mf.DENSE_DIR
    dense_dir.mkdir(exist_ok=True)
    buf_path, progress_path = dense_dir / BUFFER_FILE, dense_dir / PROGRESS_FILE
    expect = {"encoder": encoder.name, "dim": dim, "batch_size": bs, "rows": n, "dtype": np.dtype(dtype).name}
    done = 0
    if progress_path.is_file() and buf_path.is_file():
        progress = json.loads(progress_path.read_text(encoding="utf-8"))
        if {k: progress.get(k) for k in expect} == expect:
            done = int(progress["batches_done"])
            log.info("resuming encoding at batch %d (%d of %d chunks done)", done, min(done * bs, n), n)
    if done == 0:
        buf = np.lib.format.open_memmap(buf_path, mode="w+", dtype=dtype, shape=(n, dim))
    else:
        buf = np.load(buf_path, mmap_mode="r+")
    batches = (n + bs - 1) // bs
    with tqdm(total=n, initial=min(done * bs, n), desc="encode", unit=" chunks", disable=progress_disabled()) as bar:
        for b in range(done, batches):
            t = time.perf_counter()
            texts = store[b * bs:(b + 1) * bs]["index_text"]
            vecs = encoder.encode_passages(texts)
            if vecs.shape != (len(texts), dim):
                raise KrqaError(f"encoder {encoder.name} returned shape {vecs.shape} for {len(texts)} texts (dim {dim})")
            buf[b * bs:b * bs + len(texts)] = vecs
            buf.flush()
            atomic_write_json(progress_path, {**expect, "batches_done": b + 1})
            state.add_seconds("encode", time.perf_counter() - t)
            bar.update(len(texts))
    del buf
    os.replace(buf_path, dense_dir / Path(mf.EMBEDDINGS_FILE).name)
    progress_path.unlink()


def _build_faiss(cfg: FaissConfig, partial: Path, state: _State) -> None:
    from krqa.index.dense import build_faiss, write_faiss  # start-up time: faiss loads only when a dense index is built

    t = time.perf_counter()
    vectors = np.load(partial / mf.EMBEDDINGS_FILE, mmap_mode="r")
    index = build_faiss(vectors, cfg)
    with atomic_path(partial / mf.FAISS_FILE) as tmp:
        write_faiss(index, tmp)
    state.add_seconds("faiss", time.perf_counter() - t)

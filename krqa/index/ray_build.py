"""``krqa build-index --engine ray``: the build's parallel stages on a Ray cluster through Ray Data.

- read + clean + chunk: one ``map_batches`` task per dump piece (:func:`krqa.corpus.parallel.chunk_piece`),
  results streamed back in piece order so the driver accepts chunks exactly as a local build does;
- BM25 terms come out of the same tasks (one Kiwi analysis per text); the driver writes each piece's shard;
- encoding: an actor pool of the configured encoder (``index.ray.gpus_per_actor`` GPUs each when the cluster
  has GPUs, CPU actors otherwise), one task per ``index.ray.encode_shard_rows`` chunks, written into the
  memory-mapped embeddings as they finish; finished shards are recorded, so ``--resume`` skips them.

The driver then merges BM25 and builds FAISS with the same code as the local engine, so the index directory
is the same format. Ray retries a task whose worker dies and restarts a dead actor (Ray Data's defaults for
actor pools: unlimited restarts and task retries), and every task is a pure function of its input, so a
retried task gives the same bytes. Workers open the dumps and the chunk store by path: on a multi-node cluster
the corpus and the index's parent directory must be on a filesystem every node mounts at the same path.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from krqa.corpus.parallel import PieceResult, chunk_piece
from krqa.corpus.pieces import Piece
from krqa.corpus.store import load_chunks
from krqa.errors import InputError
from krqa.fsutil import atomic_write_json
from krqa.index import manifest as mf
from krqa.index.config import DenseConfig, RayConfig
from krqa.index.encoders import make_encoder

log = logging.getLogger(__name__)

PROGRESS_FILE = "ray_progress.json"
BUFFER_FILE = "embeddings.npy.partial"
EncoderFactory = Callable[[], object]


def import_ray():
    """Ray is the optional ``dist`` extra; the local engine never imports it."""
    try:
        import ray  # optional dependency: the dist extra
        import ray.data  # optional dependency: the dist extra  # noqa: F401
    except ImportError:
        raise InputError("--engine ray needs Ray Data: pip install 'krqa[dist]' (or use the default --engine local)") from None
    return ray


class RayEngine:
    """A :class:`krqa.index.build.BuildEngine` on Ray; connects on creation and leaves a cluster it joined running."""

    def __init__(self, cfg: RayConfig, address: str | None = None, encoder_factory: EncoderFactory | None = None) -> None:
        self.ray = import_ray()
        self.cfg = cfg
        self.encoder_factory = encoder_factory
        self.started = False
        if not self.ray.is_initialized():
            address = address if address is not None else cfg.address
            self.ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            self.started = True
        ctx = self.ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()

    def _items(self, n: int):
        return self.ray.data.range(n, override_num_blocks=max(1, n))

    def piece_map(self, pieces: list[Piece], spec: dict) -> Iterator[PieceResult]:
        """One task per piece (read, chunk and BM25 terms from one Kiwi analysis); results come back in piece
        order, and the driver writes the shards as a local build does."""

        def run(batch: dict[str, np.ndarray]) -> dict[str, list]:
            return {"result": [pickle.dumps(chunk_piece(pieces[int(i)], spec)) for i in batch["id"]]}

        ds = self._items(len(pieces)).map_batches(run, batch_size=1, num_cpus=self.cfg.cpus_per_task)
        for row in ds.iter_rows():
            yield pickle.loads(row["result"])

    def encode(self, store_dir: Path, n: int, cfg: DenseConfig, dense_dir: Path, name: str, dim: int) -> None:
        dense_dir.mkdir(parents=True, exist_ok=True)
        rows = max(cfg.batch_size, self.cfg.encode_shard_rows // cfg.batch_size * cfg.batch_size)
        ranges = [(a, min(a + rows, n)) for a in range(0, n, rows)]
        dtype = np.float16 if cfg.faiss.store_fp16 else np.float32
        buf_path, progress_path = dense_dir / BUFFER_FILE, dense_dir / PROGRESS_FILE
        expect = {"encoder": name, "dim": dim, "rows": n, "shard_rows": rows, "dtype": np.dtype(dtype).name}
        done: set[int] = set()
        if progress_path.is_file() and buf_path.is_file():
            progress = json.loads(progress_path.read_text(encoding="utf-8"))
            if {k: progress.get(k) for k in expect} == expect:
                done = set(progress["done"])
                log.info("resuming encoding: %d of %d shards done", len(done), len(ranges))
        buf = np.load(buf_path, mmap_mode="r+") if done else np.lib.format.open_memmap(buf_path, mode="w+", dtype=dtype, shape=(n, dim))
        todo = [i for i in range(len(ranges)) if i not in done]
        if todo:
            gpus = self.ray.cluster_resources().get("GPU", 0)
            per_actor = self.cfg.gpus_per_actor if gpus else 0
            actors = self.cfg.encoder_actors or (max(1, int(gpus // per_actor)) if per_actor else 1)
            ds = self._items(len(todo)).map(lambda row: {"id": row["id"], "start": ranges[todo[row["id"]]][0], "end": ranges[todo[row["id"]]][1]})
            ds = ds.map_batches(_EncodeActor, batch_size=1, num_gpus=per_actor, num_cpus=self.cfg.cpus_per_task,
                                compute=self.ray.data.ActorPoolStrategy(size=actors),
                                fn_constructor_args=(cfg.model_dump(), str(store_dir), dtype, self.encoder_factory))
            for row in ds.iter_rows():
                i = todo[int(row["id"])]
                a, b = ranges[i]
                vecs = np.frombuffer(row["vectors"], dtype=dtype).reshape(b - a, dim)
                buf[a:b] = vecs
                buf.flush()
                done.add(i)
                atomic_write_json(progress_path, {**expect, "done": sorted(done)})
        del buf
        os.replace(buf_path, dense_dir / Path(mf.EMBEDDINGS_FILE).name)
        progress_path.unlink(missing_ok=True)


class _EncodeActor:
    """Loads the encoder once per actor (on its GPU when it reserved one) and encodes whole shards."""

    def __init__(self, dense: dict, store_dir: str, dtype, factory: EncoderFactory | None) -> None:
        self.cfg = DenseConfig(**dense)
        self.encoder = factory() if factory is not None else make_encoder(self.cfg)
        self.store = load_chunks(store_dir)
        self.dtype = dtype

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        out = []
        bs = self.cfg.batch_size
        for a, b in zip(batch["start"], batch["end"], strict=True):
            texts = self.store[int(a):int(b)]["index_text"]
            vecs = np.concatenate([self.encoder.encode_passages(texts[i:i + bs]) for i in range(0, len(texts), bs)])
            out.append(np.ascontiguousarray(vecs, dtype=self.dtype).tobytes())
        return {"id": batch["id"], "vectors": out}

"""Exact and near-duplicate detection that scales to millions of chunks.

Near duplicates use MinHash over character 5-gram shingles with LSH banding. Band keys live in sorted numpy
runs (12 bytes per key instead of ~100 for a Python dict entry) that are probed with ``searchsorted`` a batch
at a time and merged like a binary counter, and each kept chunk stores only the low 8 bits of its 64 minhashes
(b-bit MinHash) to confirm a candidate. A kowiki-sized corpus (~3M chunks) needs well under 1 GB.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

NUM_PERM = 64
BANDS = 8
ROWS = NUM_PERM // BANDS
SHINGLE = 5
_MIX = np.uint64(0x9E3779B97F4A7C15)
_WS = re.compile(r"\s+")


def normalise(text: str) -> str:
    return _WS.sub(" ", text).strip().lower()


class ExactDedup:
    """Remembers an 8-byte digest of every normalised text it has accepted."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    @staticmethod
    def key(text: str) -> bytes:
        """The digest, computable anywhere (a worker process) and checked later with :meth:`is_duplicate_key`."""
        return hashlib.blake2b(normalise(text).encode("utf-8"), digest_size=8).digest()

    def is_duplicate_key(self, key: bytes) -> bool:
        if key in self._seen:
            return True
        self._seen.add(key)
        return False


class NearDedup:
    """First-seen-wins near-duplicate filter: a chunk is dropped when its estimated Jaccard similarity to an
    already accepted chunk reaches ``threshold``."""

    def __init__(self, threshold: float, seed: int = 1234):
        rng = np.random.default_rng(seed)
        self.threshold = threshold
        self._a = rng.integers(1, 2**63 - 1, NUM_PERM, dtype=np.uint64) | np.uint64(1)
        self._b = rng.integers(0, 2**63 - 1, NUM_PERM, dtype=np.uint64)
        self._salt = rng.integers(1, 2**63 - 1, BANDS, dtype=np.uint64)
        self._sigs = np.zeros((1024, NUM_PERM), dtype=np.uint8)
        self._count = 0
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []

    def signatures(self, texts: list[str]) -> np.ndarray:
        """MinHash signatures, shape ``(len(texts), NUM_PERM)``, via a vectorised rolling hash of the code points."""
        out = np.empty((len(texts), NUM_PERM), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for row, text in enumerate(texts):
                cps = np.frombuffer(normalise(text).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
                k = min(SHINGLE, len(cps)) or 1
                if not len(cps):
                    cps = np.zeros(1, dtype=np.uint64)
                m = len(cps) - k + 1
                shingles = np.zeros(m, dtype=np.uint64)
                for t in range(k):
                    shingles = shingles * _MIX + cps[t : t + m]
                out[row] = ((shingles[None, :] * self._a[:, None] + self._b[:, None]) >> np.uint64(32)).min(axis=1)
        return out

    def _band_keys(self, sigs: np.ndarray) -> np.ndarray:
        keys = np.zeros((len(sigs), BANDS), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for band in range(BANDS):
                key = self._salt[band].repeat(len(sigs))
                for col in sigs[:, band * ROWS : (band + 1) * ROWS].T:
                    key = (key ^ col) * _MIX
                keys[:, band] = key
        return keys

    def filter(self, texts: list[str]) -> list[bool]:
        """For each text in order, True when it is a near duplicate of an accepted one (earlier batches or
        earlier in this batch); the others are accepted."""
        return self.filter_signatures(self.signatures(texts)) if texts else []

    def filter_signatures(self, sigs: np.ndarray) -> list[bool]:
        """:meth:`filter` on signatures computed elsewhere: workers hash in parallel, one process decides in order."""
        if not len(sigs):
            return []
        low = (sigs & np.uint64(0xFF)).astype(np.uint8)
        keys = self._band_keys(sigs)
        found = np.full(keys.shape, -1, dtype=np.int64)
        flat = keys.ravel()
        for run_keys, run_ids in self._runs:
            pos = np.minimum(np.searchsorted(run_keys, flat), len(run_keys) - 1)
            hit = (run_keys[pos] == flat).reshape(keys.shape)
            found = np.where((found < 0) & hit, run_ids[pos].reshape(keys.shape), found)
        batch: dict[int, int] = {}
        dup: list[bool] = []
        new_keys: list[np.ndarray] = []
        new_ids: list[int] = []
        for i in range(len(sigs)):
            candidates = {int(c) for c in found[i] if c >= 0}
            candidates.update(batch[k] for k in keys[i].tolist() if k in batch)
            if any(self._similar(low[i], c) for c in candidates):
                dup.append(True)
                continue
            dup.append(False)
            cid = self._add(low[i])
            for k in keys[i].tolist():
                batch.setdefault(k, cid)
            new_keys.append(keys[i])
            new_ids.append(cid)
        if new_ids:
            self._push_run(np.concatenate(new_keys), np.repeat(np.asarray(new_ids, dtype=np.uint32), BANDS))
        return dup

    def _similar(self, low: np.ndarray, cid: int) -> bool:
        match = float(np.count_nonzero(self._sigs[cid] == low)) / NUM_PERM
        return (match - 1 / 256) / (1 - 1 / 256) >= self.threshold

    def _add(self, low: np.ndarray) -> int:
        if self._count == len(self._sigs):
            self._sigs = np.concatenate([self._sigs, np.zeros_like(self._sigs)])
        self._sigs[self._count] = low
        self._count += 1
        return self._count - 1

    def _push_run(self, keys: np.ndarray, ids: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        self._runs.append((keys[order], ids[order]))
        # Binary-counter merging keeps O(log n) runs and O(n log n) total work.
        while len(self._runs) > 1 and len(self._runs[-1][0]) >= len(self._runs[-2][0]):
            (k2, i2), (k1, i1) = self._runs.pop(), self._runs.pop()
            merged_keys = np.concatenate([k1, k2])
            order = np.argsort(merged_keys, kind="stable")
            self._runs.append((merged_keys[order], np.concatenate([i1, i2])[order]))

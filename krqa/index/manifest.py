"""The index manifest: what was built, from what, with which encoder, and which files make it up.

It is written last, so a directory without one is a half-written build. Loading compares it with the
files on disk (sizes, row counts) and with the current config's encoder, and refuses a mismatch with a
message saying what to rebuild, instead of returning wrong neighbours from vectors of another model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, ValidationError

from krqa.errors import InputError
from krqa.fsutil import unlisted_file

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
CHUNKS_DIR = "chunks"
BM25_DIR = "bm25"
DENSE_DIR = "dense"
EMBEDDINGS_FILE = "dense/embeddings.npy"
FAISS_FILE = "dense/faiss.index"


class EncoderInfo(BaseModel):
    """The encoder that embedded the passages; queries must be encoded by the same one."""

    backend: str
    name: str
    dim: int


class SourceRecord(BaseModel):
    """One corpus source as it was read: where from, its size and hash, and what it gave."""

    name: str
    path: str
    format: str
    bytes: int
    sha256: str
    docs: int
    chunks: int


class IndexManifest(BaseModel):
    """``manifest.json``. Unknown keys are ignored, so an index written by an older krqa of the same format
    version still opens."""

    model_config = ConfigDict(extra="ignore")

    format_version: int
    krqa_version: str
    created_at: str
    build_seconds: float
    stage_seconds: dict[str, float]
    this_run_seconds: float
    config: dict[str, Any]
    sources: list[SourceRecord]
    chunk_count: int
    encoder: Optional[EncoderInfo] = None
    bm25: dict[str, Any]
    faiss: Optional[dict[str, Any]] = None
    build_fingerprint: Optional[str] = None
    files: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def file_sizes(root: Path) -> dict[str, int]:
    """Every file under ``root`` (relative path -> bytes), the manifest itself excluded."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != MANIFEST_FILE:
            out[path.relative_to(root).as_posix()] = path.stat().st_size
    return out


def read_manifest(index_dir: str | os.PathLike[str]) -> IndexManifest:
    root = Path(index_dir)
    if not root.is_dir():
        partial = root.with_name(root.name + ".partial")
        hint = f" (an unfinished build is in {partial}: run `krqa build-index --resume`)" if partial.is_dir() else ""
        raise InputError(f"{root}: index not found{hint}; run `krqa build-index` first")
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise InputError(f"{root}: no {MANIFEST_FILE}: half-written or not an index; rebuild with `krqa build-index`")
    return parse_manifest(path)


def parse_manifest(path: Path) -> IndexManifest:
    """``path`` as krqa's manifest, or a one-line InputError saying why it is not one."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable manifest ({exc.__class__.__name__}); rebuild the index") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        found = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise InputError(f"{path}: format_version {found!r}, this krqa reads {FORMAT_VERSION}; rebuild the index")
    try:
        return IndexManifest.model_validate(manifest)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise InputError(f"{path}: {where}: {first['msg']}; rebuild the index") from None


def foreign_content(root: Path) -> str | None:
    """Why ``root`` is not wholly a krqa index (see :data:`krqa.fsutil.OwnerCheck`), or None: its manifest must
    parse as krqa's and list every file beside it, so replacing the index removes nothing krqa did not write."""
    path = root / MANIFEST_FILE
    if not path.is_file():
        return f"no {MANIFEST_FILE}"
    try:
        manifest = parse_manifest(path)
    except InputError:
        return f"its {MANIFEST_FILE} is not a krqa index manifest"
    extra = unlisted_file(root, {*manifest.files, MANIFEST_FILE})
    return None if extra is None else f"{extra} is not listed in its {MANIFEST_FILE}"


def enclosing_index(path: Path) -> Path | None:
    """The krqa index ``path`` lies in (or is), if any: other outputs must never be written into one."""
    for parent in (path.resolve(), *path.resolve().parents):
        if (parent / MANIFEST_FILE).is_file() and foreign_content(parent) is None:
            return parent
    return None


def check_files(index_dir: Path, manifest: IndexManifest) -> None:
    """Every listed file exists with its recorded size: catches truncation, swapped files and partial copies."""
    for rel, size in manifest.files.items():
        path = index_dir / rel
        if not path.is_file():
            raise InputError(f"{path}: listed in {MANIFEST_FILE} but missing; the index is incomplete, rebuild it")
        actual = path.stat().st_size
        if actual != size:
            raise InputError(f"{path}: {actual} bytes but {MANIFEST_FILE} says {size}; the index does not match its manifest, rebuild it")


def check_encoder(index_dir: Path, manifest: IndexManifest, name: str | None, dim: int | None = None) -> None:
    """The query encoder must be the one that embedded the passages, or dense scores are meaningless."""
    enc = manifest.encoder
    if name is None or enc is None:
        return
    if enc.name != name:
        raise InputError(
            f"{index_dir}: index was built with encoder '{enc.name}' (dim {enc.dim}) but the config uses "
            f"'{name}'; rebuild the index or set index.dense to the encoder it was built with"
        )
    if dim is not None and enc.dim != dim:
        raise InputError(f"{index_dir}: index vectors have dim {enc.dim} but encoder '{name}' produces {dim}; rebuild the index")

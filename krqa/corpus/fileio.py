"""Open dump files transparently through bz2/gzip/xz while keeping track of where we are in the file.

Positions in skip reports are compressed-file byte offsets when the input is compressed (that is what
``dd``/``bzip2recover`` need), plain byte offsets otherwise.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
from pathlib import Path

from krqa.fsutil import sha256_file

_BZ2_MAGIC = b"BZh"
_GZIP_MAGIC = b"\x1f\x8b"
_XZ_MAGIC = b"\xfd7zXZ\x00"

READ_ERRORS = (EOFError, OSError, ValueError)
"""What a damaged compressed stream raises mid-read: ``EOFError`` for a cut-off .bz2/.xz, ``OSError`` for bad
data (``Invalid data stream``, ``CRC check failed``; ``lzma.LZMAError`` is one)."""


def compression_of(magic: bytes) -> str | None:
    """``bz2``, ``gzip``, ``xz`` or None from a file's first bytes: the file name is not trusted (wikiextractor
    ``--compress`` writes ``wiki_00.bz2``, but a renamed or re-compressed copy keeps its magic only)."""
    if magic.startswith(_BZ2_MAGIC):
        return "bz2"
    if magic.startswith(_GZIP_MAGIC):
        return "gzip"
    if magic.startswith(_XZ_MAGIC):
        return "xz"
    return None


class Dump:
    """A binary stream over a possibly compressed file; :meth:`raw_offset` is the position in the file
    itself (compressed bytes consumed), which stays meaningful when decompression fails."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._raw = open(self.path, "rb")
        magic = self._raw.read(len(_XZ_MAGIC))
        self._raw.seek(0)
        self.compression = compression_of(magic)
        if self.compression == "bz2":
            # BZ2File reads concatenated streams, which is exactly the multistream dump layout.
            self.stream: io.BufferedIOBase = bz2.BZ2File(self._raw)
        elif self.compression == "gzip":
            self.stream = gzip.GzipFile(fileobj=self._raw)
        elif self.compression == "xz":
            # LZMAFile also reads concatenated .xz streams (``xz`` output appended file by file).
            self.stream = lzma.LZMAFile(self._raw)
        else:
            self.stream = self._raw

    def raw_offset(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        if self.stream is not self._raw:
            self.stream.close()
        self._raw.close()

    def __enter__(self) -> Dump:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def peek(path: str | os.PathLike[str], size: int = 65536) -> bytes:
    """The first decompressed bytes of a file, for format detection; damaged input just yields less."""
    with Dump(path) as dump:
        try:
            return dump.stream.read(size)
        except READ_ERRORS:
            return b""


def tree_files(root: str | os.PathLike[str]) -> list[Path]:
    """Regular, non-hidden files under ``root`` (hidden folders skipped too), in sorted relative-path order:
    the order a dump tree such as wikiextractor's ``AA/wiki_00`` … is meant to be read in."""
    root = Path(root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath, f) for f in filenames if not f.startswith(".") and Path(dirpath, f).is_file()]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def source_digest(path: str | os.PathLike[str]) -> tuple[int, str]:
    """``(bytes, sha256)`` of a source: a file's own, or for a folder the total size and a sha256 over
    ``relative path, size, sha256`` of every file in :func:`tree_files` order, so a manifest or report names
    the exact dump tree it was built from."""
    path = Path(path)
    if not path.is_dir():
        return path.stat().st_size, sha256_file(path)
    digest, total = hashlib.sha256(), 0
    for file in tree_files(path):
        size = file.stat().st_size
        total += size
        digest.update(f"{file.relative_to(path).as_posix()}\0{size}\0{sha256_file(file)}\n".encode())
    return total, digest.hexdigest()


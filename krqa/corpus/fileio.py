"""Open dump files transparently through bz2/gzip while keeping track of where we are in the file.

Positions in skip reports are compressed-file byte offsets when the input is compressed (that is what
``dd``/``bzip2recover`` need), plain byte offsets otherwise.
"""

from __future__ import annotations

import bz2
import gzip
import io
import os
from pathlib import Path

_BZ2_MAGIC = b"BZh"
_GZIP_MAGIC = b"\x1f\x8b"

READ_ERRORS = (EOFError, OSError, ValueError)
"""What a damaged compressed stream raises mid-read: ``EOFError`` for a cut-off .bz2, ``OSError`` for bad
data (``Invalid data stream``, ``CRC check failed``)."""


class Dump:
    """A binary stream over a possibly compressed file; :meth:`raw_offset` is the position in the file
    itself (compressed bytes consumed), which stays meaningful when decompression fails."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._raw = open(self.path, "rb")
        magic = self._raw.read(3)
        self._raw.seek(0)
        self.compression = "bz2" if magic == _BZ2_MAGIC else "gzip" if magic[:2] == _GZIP_MAGIC else None
        if self.compression == "bz2":
            # BZ2File reads concatenated streams, which is exactly the multistream dump layout.
            self.stream: io.BufferedIOBase = bz2.BZ2File(self._raw)
        elif self.compression == "gzip":
            self.stream = gzip.GzipFile(fileobj=self._raw)
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


def first_line(path: str | os.PathLike[str]) -> bytes:
    """The whole first decompressed line of a file (a JSONL record can be any length); damaged input yields less."""
    with Dump(path) as dump:
        try:
            return dump.stream.readline()
        except READ_ERRORS:
            return b""


def peek(path: str | os.PathLike[str], size: int = 65536) -> bytes:
    """The first decompressed bytes of a file, for format detection; damaged input just yields less."""
    with Dump(path) as dump:
        try:
            return dump.stream.read(size)
        except READ_ERRORS:
            return b""

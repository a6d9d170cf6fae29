"""The chunk store: an Arrow table (``datasets`` ``save_to_disk``) that indexes and services memory-map.

One row per chunk; ``chunk_id`` equals the row number, which is what BM25 and FAISS return.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from krqa.errors import InputError
from krqa.fsutil import unlisted_file

CHUNK_COLUMNS: dict[str, str] = {
    "chunk_id": "int64",
    "doc_id": "string",
    "source": "string",
    "title": "string",
    "section": "string",
    "url": "string",
    "text": "string",
    "index_text": "string",
    "char_start": "int64",
    "char_end": "int64",
}
"""``text`` is the chunk body shown to users and models; ``index_text`` adds the 'title > section' prefix
that BM25 and the encoder see; ``char_start``/``char_end`` locate ``text`` inside its section's text."""


STORE_FILE = "chunks.arrow"
REPORT_FILE = "corpus_report.json"


def foreign_content(root: Path) -> str | None:
    """Why ``root`` is not wholly a krqa chunk store (see :data:`krqa.fsutil.OwnerCheck`), or None: its
    ``corpus_report.json`` must parse as krqa's report, and nothing but the store and the report may be there."""
    path = root / REPORT_FILE
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"no {REPORT_FILE}"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return f"its {REPORT_FILE} is not a krqa corpus report"
    if not isinstance(report, dict) or not isinstance(report.get("chunks"), int) or not isinstance(report.get("sources"), list):
        return f"its {REPORT_FILE} is not a krqa corpus report"
    extra = unlisted_file(root, {STORE_FILE, REPORT_FILE})
    return None if extra is None else f"{extra} is not part of a chunk store"


def _schema():
    import pyarrow as pa  # start-up time: pyarrow loads only where chunks are written or read

    return pa.schema([(name, pa.int64() if dtype == "int64" else pa.string()) for name, dtype in CHUNK_COLUMNS.items()])


def write_chunks(rows: Iterable[Mapping[str, Any]], out_dir: str | os.PathLike[str], batch_rows: int = 4096) -> int:
    """Stream rows (``chunk_id`` is assigned here) into ``out_dir/chunks.arrow`` in record batches.

    Memory stays flat on a full dump. Callers wrap this in :func:`krqa.fsutil.atomic_dir` so a crash never
    leaves a half-written store behind.
    """
    import pyarrow as pa  # start-up time: as above

    schema = _schema()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    columns: dict[str, list[Any]] = {name: [] for name in CHUNK_COLUMNS}
    with pa.OSFile(str(out / STORE_FILE), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:

        def flush() -> None:
            if columns["chunk_id"]:
                writer.write_batch(pa.record_batch([pa.array(columns[c], schema.field(c).type) for c in CHUNK_COLUMNS], schema=schema))
                for values in columns.values():
                    values.clear()

        for row in rows:
            text = str(row.get("text", ""))
            for name in CHUNK_COLUMNS:
                if name == "chunk_id":
                    columns[name].append(n)
                elif name == "char_start":
                    columns[name].append(int(row.get("char_start", 0)))
                elif name == "char_end":
                    columns[name].append(int(row.get("char_end", len(text))))
                else:
                    columns[name].append(str(row.get(name, "") or ""))
            n += 1
            if len(columns["chunk_id"]) >= batch_rows:
                flush()
        flush()
    return n


def load_chunks(store_dir: str | os.PathLike[str]):
    """Open a chunk store memory-mapped as a ``datasets.Dataset``; rows are read lazily from the page cache."""
    from datasets import Dataset  # start-up time: datasets takes about a second to import

    path = Path(store_dir) / STORE_FILE
    if not path.is_file():
        raise InputError(f"{path}: chunk store missing; run `krqa build-index` first")
    return Dataset.from_file(str(path), in_memory=False)

"""Parallel corpus build: dumps cut into pieces give the same chunk store as one process, and a damaged
piece of a multistream dump costs only its own pages."""

from __future__ import annotations

import bz2
import json
from pathlib import Path

import pytest

from krqa.corpus.config import SourceConfig
from krqa.corpus.document import Document
from krqa.corpus.mediawiki import iter_mediawiki
from krqa.corpus.formats import plan_pieces
from krqa.corpus.pipeline import build_chunks
from krqa.corpus.store import load_chunks
from krqa.errors import InputError

pytestmark = pytest.mark.slow
PIECE_MB = 0.004  # 4 kB pieces: the 56 kB Namuwiki sample becomes about a dozen


def _config(tiny_config, *sets: str):
    return tiny_config(f"corpus.piece_mb={PIECE_MB}", *sets)


def _build(cfg, out: Path, workers: int, sources=None):
    report = build_chunks(cfg.corpus, out, sources=sources, workers=workers)
    return report, load_chunks(out).to_list()


def _summary(report) -> list[tuple]:
    return [(s.name, s.docs, s.chunks, dict(s.left_out), dict(s.skipped)) for s in report.sources]


@pytest.fixture(scope="module")
def derived_dumps(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The kowiki sample as plain XML and as a multistream .bz2 (header, then 4 pages per stream), and the
    Namuwiki sample's raw documents as JSONL. Each copy swaps a particle so that its chunks are not all exact
    duplicates of the sample's (some stay near duplicates, which exercises that filter's order too)."""
    root = tmp_path_factory.mktemp("dumps")
    xml = bz2.decompress((repo / "corpus" / "sample_kowiki.xml.bz2").read_bytes())
    (root / "kowiki.xml").write_bytes(xml.replace("은 ".encode(), "는 ".encode()))
    xml = xml.replace("을 ".encode(), "를 ".encode())
    head, rest = xml.split(b"<page>", 1)
    pages = (b"<page>" + rest).split(b"</page>")
    tail = pages.pop()
    pages = [p + b"</page>" for p in pages]
    streams = [bz2.compress(head)] + [bz2.compress(b"".join(pages[i:i + 4])) for i in range(0, len(pages), 4)]
    streams[-1] = bz2.compress(b"".join(pages[len(pages) - (len(pages) % 4 or 4):]) + tail)
    (root / "kowiki-multistream.xml.bz2").write_bytes(b"".join(streams))
    items = json.loads((repo / "corpus" / "sample_namuwiki.json").read_text(encoding="utf-8"))
    with (root / "docs.jsonl").open("w", encoding="utf-8") as out:
        for i, item in enumerate(items):
            out.write(json.dumps({"id": f"n{i}", "title": item["title"], "text": item["text"]}, ensure_ascii=False) + "\n")
        out.write("{broken json\n")
    return {"xml": root / "kowiki.xml", "bz2": root / "kowiki-multistream.xml.bz2", "jsonl": root / "docs.jsonl",
            "streams": [len(s) for s in streams]}


def test_parallel_equals_single_process(tiny_config, repo: Path, tmp_path: Path, derived_dumps) -> None:
    """Both samples plus the kowiki sample as plain XML and as multistream .bz2, and JSONL, in one build."""
    for kind, fmt in (("xml", "mediawiki"), ("bz2", "mediawiki"), ("jsonl", "jsonl")):
        pieces = plan_pieces(0, kind, derived_dumps[kind], fmt, 4000)
        assert len(pieces) > 2 and {p.kind for p in pieces} == {kind}
    assert len(plan_pieces(1, "namuwiki", repo / "corpus" / "sample_namuwiki.json", "namuwiki", 4000)) >= 10
    cfg = _config(tiny_config)
    sources = [*cfg.corpus.sources, *(SourceConfig(path=str(derived_dumps[k]), name=k) for k in ("xml", "bz2", "jsonl"))]
    one, rows_one = _build(cfg, tmp_path / "one", workers=1, sources=sources)
    two, rows_two = _build(cfg, tmp_path / "two", workers=2, sources=sources)
    assert len(rows_one) == one.chunks > 500 and {r["source"] for r in rows_one} == {"kowiki", "namuwiki", "xml", "bz2", "jsonl"}
    assert rows_two == rows_one  # same chunk ids, order, text and every other column
    assert _summary(two) == _summary(one) and two.dropped_chunks == one.dropped_chunks
    assert two.dropped_chunks.get("exact_duplicate", 0) + two.dropped_chunks.get("near_duplicate", 0) > 100
    jsonl = [s for s in two.sources if s.name == "jsonl"][0]
    assert [s["position"] for s in jsonl.skips] == ["line 43"]  # the bad last line keeps its global line number


def test_corrupt_bz2_stream_costs_only_its_pages(tiny_config, repo: Path, tmp_path: Path, derived_dumps) -> None:
    data = bytearray(derived_dumps["bz2"].read_bytes())
    sizes = derived_dumps["streams"]
    start = sum(sizes[:3])  # the third page stream
    data[start + 40:start + 60] = bytes(20)
    bad = tmp_path / "damaged.xml.bz2"
    bad.write_bytes(bytes(data))
    cfg = _config(tiny_config)
    sources = [SourceConfig(path=str(bad), name="x")]
    clean_docs = sum(isinstance(r, Document) for r in iter_mediawiki(derived_dumps["bz2"]))
    report, rows = _build(cfg, tmp_path / "par", workers=2, sources=sources)
    skips = report.sources[0].skips
    assert [s["reason"] for s in skips] == ["corrupt_stream"] and f"file byte {start}" in skips[0]["position"]
    assert clean_docs - 4 <= report.sources[0].docs < clean_docs  # one stream's pages lost
    single, single_rows = _build(cfg, tmp_path / "seq", workers=1, sources=sources)
    assert single.sources[0].docs == report.sources[0].docs and single_rows == rows  # one process reads the same pieces
    with pytest.raises(InputError, match=f"corrupt_stream at bz2 stream at file byte {start}"):
        build_chunks(_config(tiny_config, "corpus.strict=true").corpus, tmp_path / "strict", sources=sources, workers=2)
    assert not (tmp_path / "strict").exists()

"""Corpus ingestion speed: reader throughput (MediaWiki XML.bz2 and plain XML, Namuwiki JSON), wikitext
cleaning alone, and Kiwi chunking with 1 vs 2 workers, with peak memory; extrapolated to the full kowiki.

The input is generated into a temporary directory by repeating the bundled samples with fresh titles/ids
(nothing is written into the repo). Each measurement runs in a fresh process so its peak RSS is its own.

    .venv/bin/python bench/bench_corpus.py            # >= 200 MB of wikitext XML, 3 runs each
    .venv/bin/python bench/bench_corpus.py --quick    # 20 MB, for a smoke run
"""

from __future__ import annotations

import argparse
import bz2
import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

KOWIKI_XML_BYTES = 4.7e9
KOWIKI_ARTICLES = 690_000


def _sample_pages() -> tuple[bytes, list[tuple[str, str]]]:
    import xml.etree.ElementTree as ET

    from krqa.corpus.mediawiki import iter_pages

    header = b""
    pages = []
    for item in iter_pages(REPO / "corpus" / "sample_kowiki.xml.bz2"):
        offset, raw = item
        if offset < 0:
            header = raw
            continue
        el = ET.fromstring(raw)
        if el.findtext("ns") == "0" and el.find("redirect") is None:
            pages.append((el.findtext("title"), el.find("revision").findtext("text")))
    return header, pages


def generate(tmp: Path, size_mb: float) -> dict[str, Path]:
    """Plain XML of ``size_mb``, its bz2 (multistream: one stream per 100 pages), and a Namuwiki JSON of a
    quarter of that size, all made by repeating the samples under new titles."""
    header, pages = _sample_pages()
    xml_path, bz2_path, namu_path = tmp / "kowiki.xml", tmp / "kowiki.xml.bz2", tmp / "namuwiki.json"
    target = size_mb * 1e6
    written = 0
    n = 0
    with open(xml_path, "wb") as xml_out, open(bz2_path, "wb") as bz_out:
        xml_out.write(header)
        bz_out.write(bz2.compress(header, 1))
        group: list[bytes] = []
        while written < target:
            title, text = pages[n % len(pages)]
            n += 1
            body = text.replace("'''", f"'''{n}번 ", 1)
            rec = f"  <page>\n    <title>{escape(title)} {n}</title>\n    <ns>0</ns>\n    <id>{n}</id>\n    <revision>\n      <text xml:space=\"preserve\">{escape(body)}</text>\n    </revision>\n  </page>\n".encode()
            xml_out.write(rec)
            group.append(rec)
            written += len(rec)
            if len(group) == 100:
                bz_out.write(bz2.compress(b"".join(group), 1))
                group = []
        tail = b"".join(group) + b"</mediawiki>\n"
        xml_out.write(b"</mediawiki>\n")
        bz_out.write(bz2.compress(tail, 1))
    items = json.loads((REPO / "corpus" / "sample_namuwiki.json").read_text(encoding="utf-8"))
    items = [it for it in items if it["namespace"] == "0" and not it["text"].startswith("#redirect")]
    with open(namu_path, "w", encoding="utf-8") as out:
        out.write("[")
        size, k = 0, 0
        while size < target / 4:
            it = dict(items[k % len(items)], title=f"{items[k % len(items)]['title']} {k}")
            rec = ("," if k else "") + json.dumps(it, ensure_ascii=False)
            out.write(rec)
            size += len(rec.encode())
            k += 1
        out.write("]")
    return {"xml": xml_path, "bz2": bz2_path, "namu": namu_path}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_reader(kind: str, path: str) -> tuple[int, float, float]:
    from krqa.corpus.document import Document
    from krqa.corpus.mediawiki import iter_mediawiki
    from krqa.corpus.namuwiki import iter_namuwiki

    reader = iter_namuwiki if kind == "namu" else iter_mediawiki
    start = time.perf_counter()
    docs = sum(1 for r in reader(path) if isinstance(r, Document))
    return docs, time.perf_counter() - start, _peak_mb()


def _run_clean(texts: list[str]) -> tuple[int, float, float]:
    from krqa.corpus.wikitext import clean_wikitext

    start = time.perf_counter()
    for text in texts:
        clean_wikitext(text)
    return len(texts), time.perf_counter() - start, _peak_mb()


def _run_chunk(path: str, n_docs: int, workers: int) -> tuple[int, float, float, int]:
    from krqa.corpus.chunking import Chunker
    from krqa.corpus.config import ChunkingConfig
    from krqa.corpus.document import Document
    from krqa.corpus.mediawiki import iter_mediawiki

    docs = []
    for r in iter_mediawiki(path):
        if isinstance(r, Document):
            docs.append(r)
            if len(docs) >= n_docs:
                break
    chunker = Chunker(ChunkingConfig(kiwi_workers=workers, near_dup_threshold=1.0, dedup=False))
    chunker.sentences(["워밍업 문장이다."])
    start = time.perf_counter()
    chunks = sum(1 for _ in chunker.chunk_documents(docs))
    return len(docs), time.perf_counter() - start, _peak_mb(), chunks


def isolated(fn, *args):
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 MB instead of 200 MB")
    ap.add_argument("--size-mb", type=float, default=None, help="size of the generated plain XML")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--chunk-docs", type=int, default=None, help="documents chunked per Kiwi run")
    args = ap.parse_args()
    size = args.size_mb or (20 if args.quick else 210)
    chunk_docs = args.chunk_docs or (300 if args.quick else 1000)
    with tempfile.TemporaryDirectory(prefix="krqa-bench-") as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.perf_counter()
        files = generate(tmp, size)
        sizes = {k: p.stat().st_size for k, p in files.items()}
        print(f"generated in {time.perf_counter() - t0:.0f}s: " + ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in sizes.items()), file=sys.stderr)
        _, pages = _sample_pages()
        texts = [t for _, t in pages] * 50
        rows = []
        for label, fn, fargs, size_key in (
            ("mediawiki .xml", _run_reader, ("xml", str(files["xml"])), "xml"),
            ("mediawiki .xml.bz2", _run_reader, ("bz2", str(files["bz2"])), "xml"),
            ("namuwiki .json", _run_reader, ("namu", str(files["namu"])), "namu"),
            ("wikitext cleaning only", _run_clean, (texts,), None),
        ):
            runs = [isolated(fn, *fargs) for _ in range(args.runs)]
            secs = statistics.median(r[1] for r in runs)
            docs = runs[0][0]
            mb = sizes[size_key] / 1e6 if size_key else sum(len(t.encode()) for t in texts) / 1e6
            rows.append((label, docs, docs / secs, mb / secs, None, max(r[2] for r in runs)))
            print(f"done {label}", file=sys.stderr)
        for workers in (1, 2):
            runs = [isolated(_run_chunk, str(files["xml"]), chunk_docs, workers) for _ in range(args.runs)]
            secs = statistics.median(r[1] for r in runs)
            rows.append((f"Kiwi chunking, {workers} worker{'s' if workers > 1 else ''}", runs[0][0], runs[0][0] / secs, None, runs[0][3] / secs, max(r[2] for r in runs)))
    print(f"\ncorpus ingestion, {os.cpu_count()} cores, median of {args.runs} runs, plain XML {sizes['xml'] / 1e6:.0f} MB")
    print(f"| {'stage':<26} | {'docs':>7} | {'docs/s':>8} | {'MB/s':>6} | {'chunks/s':>8} | {'peak RSS MB':>11} |")
    print(f"|{'-' * 28}|{'-' * 8}:|{'-' * 9}:|{'-' * 7}:|{'-' * 9}:|{'-' * 12}:|")
    for label, docs, dps, mbps, cps, peak in rows:
        mb_cell = "-" if mbps is None else f"{mbps:.1f}"
        chunk_cell = "-" if cps is None else f"{cps:.0f}"
        print(f"| {label:<26} | {docs:>7} | {dps:>8.0f} | {mb_cell:>6} | {chunk_cell:>8} | {peak:>11.0f} |")
    xml_rate = rows[0][3]
    bz_rate = rows[1][3]
    chunk1, chunk2 = rows[-2][2], rows[-1][2]
    print(f"\nKiwi 2 workers vs 1: x{chunk2 / chunk1:.2f}")
    print(f"kowiki extrapolation ({KOWIKI_XML_BYTES / 1e9:.1f} GB XML, {KOWIKI_ARTICLES:,} articles): "
          f"read+clean {KOWIKI_XML_BYTES / 1e6 / xml_rate / 60:.0f} min from .xml, {KOWIKI_XML_BYTES / 1e6 / bz_rate / 60:.0f} min from .xml.bz2; "
          f"chunking {KOWIKI_ARTICLES / chunk2 / 3600:.1f} h with 2 Kiwi workers")


if __name__ == "__main__":
    main()

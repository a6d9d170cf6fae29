"""``krqa build-corpus``: read dumps, clean and chunk them, write the chunk store and print the report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from krqa.cli.common import ConfigOpt, CorpusOpt, JsonOpt, SetOpt, WorkersOpt, get_config, print_json
from krqa.corpus.config import SourceConfig
from krqa.errors import InputError
from krqa.index.manifest import enclosing_index


def build_corpus(
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    corpus: CorpusOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output directory (default: <index.dir>-chunks, beside the index, never inside it).", show_default=False)] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Fail (exit 2) on the first bad page instead of skipping it.")] = False,
    workers: WorkersOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Read MediaWiki XML(.bz2), Namuwiki JSON, JSONL, SQuAD or wikiextractor output (a folder or one file) and write a chunk store.

    Bad pages are skipped and reported with their position; with --strict the first one stops the build
    with a one-line error and exit code 2, and nothing is written. --out must be new, empty or a krqa
    chunk store (with corpus_report.json), and never inside a krqa index (the index's own chunk store would no
    longer match its manifest); it is replaced only when the new store is complete.
    """
    from krqa.corpus.pipeline import build_chunks  # start-up time: `krqa --help` imports every command module

    cfg = get_config(config, overrides)
    sources = [SourceConfig(path=str(p.resolve())) for p in corpus] if corpus else None
    index_dir = Path(cfg.index.dir)
    out_dir = out if out is not None else index_dir.with_name(index_dir.name + "-chunks")
    if (inside := enclosing_index(out_dir)) is not None:
        raise InputError(f"--out {out_dir}: inside the krqa index {inside}; build-corpus never writes into an index "
                         "(its manifest would no longer match), choose a directory outside it")
    report = build_chunks(cfg.corpus, out_dir, sources=sources, strict=strict or None, workers=workers, token_model=cfg.index.dense.model,
                           bm25=cfg.index.bm25)
    if json_out:
        print_json(report.to_json())
        return
    typer.echo(f"wrote {report.chunks} chunks from {report.docs} documents to {report.out_dir} in {report.seconds:.1f}s")
    for src in report.sources:
        left_out = ", ".join(f"{k} {v}" for k, v in sorted(src.left_out.items())) or "none"
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(src.skipped.items())) or "none"
        typer.echo(f"  {src.name} ({src.format}, {src.bytes:,} bytes): {src.docs} docs, {src.chunks} chunks; left out: {left_out}; skipped: {skipped}")
        for skip in src.skips:
            typer.echo(f"    skipped {skip['reason']} at {skip['position']}" + (f": {skip['detail']}" if skip["detail"] else ""))
    if report.dropped_chunks:
        typer.echo("  chunks dropped: " + ", ".join(f"{k} {v}" for k, v in sorted(report.dropped_chunks.items())))

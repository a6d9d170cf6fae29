"""``krqa build-index``: corpus -> chunks -> BM25 + FAISS index directory with a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from krqa.cli.common import ConfigOpt, CorpusOpt, JsonOpt, SetOpt, WorkersOpt, get_config, print_json
from krqa.errors import InputError


def build_index(
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    corpus: CorpusOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Index directory (default: index.dir); new, empty or a krqa index.", show_default=False)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted build from its last finished batch.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Fail (exit 2) on the first bad page instead of skipping and reporting it; the previous index stays.")] = False,
    workers: WorkersOpt = None,
    engine: Annotated[str, typer.Option("--engine", help="local: worker processes on this machine; ray: a Ray cluster (needs the dist extra of krqa).")] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster to join: 'auto' (this machine's cluster) or HOST:PORT; default index.ray.address, else a local one.", show_default=False)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Build BM25 (Kiwi morphemes, bm25s) and dense (FAISS) indexes over the corpus chunks.

    The build happens in <out>.partial/ and replaces <out> by an atomic swap only when complete; --resume
    continues it (or installs it, when it finished from the same corpus and config). <out> must be new,
    empty or a krqa index: any other directory, the current directory and its parents are refused.
    Reading, chunking and tokenizing use --workers processes; with --engine ray they, and the encoding
    (GPU actors when the cluster has GPUs), run on a Ray cluster. Every engine and worker count writes the
    same index.
    """
    from krqa.index import build  # start-up time: `krqa --help` imports every command module

    if engine not in ("local", "ray"):
        raise InputError(f"--engine {engine!r}: expected 'local' or 'ray'")
    cfg = get_config(config, overrides, {"corpus.strict": ("--strict", True if strict else None)})
    out_dir = out.resolve() if out is not None else Path(cfg.index.dir)
    ray_engine = None
    if engine == "ray":
        from krqa.index.ray_build import RayEngine  # start-up time: `krqa --help` imports every command module

        ray_engine = RayEngine(cfg.index.ray, address=ray_address)
    try:
        manifest = build.build_index(cfg.corpus, cfg.index, out_dir, corpus_paths=list(corpus) if corpus else None, resume=resume,
                                     workers=workers, engine=ray_engine)
    finally:
        if ray_engine is not None:
            ray_engine.close()
    if json_out:
        print_json(manifest.to_json())
        return
    enc = manifest.encoder
    typer.echo(f"index {out_dir}: {manifest.chunk_count:,} chunks, "
               f"encoder {enc.name + ' dim ' + str(enc.dim) if enc else 'none (bm25 only)'}, "
               f"{sum(manifest.files.values()) / 1e6:.1f} MB")
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in manifest.stage_seconds.items())
    typer.echo(f"  stages: {stages}")
    for src in manifest.sources:
        typer.echo(f"  {src.name} ({src.format}, {src.bytes:,} bytes, sha256 {src.sha256[:12]}): {src.docs} docs, {src.chunks} chunks")

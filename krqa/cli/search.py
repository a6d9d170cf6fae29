"""``krqa search``: query the index and show title, section, score and a snippet per hit."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from krqa.cli.common import ConfigOpt, JsonOpt, SetOpt, get_config, print_json

SNIPPET_CHARS = 120


def search(
    query: Annotated[str, typer.Argument(help="Question or keywords (Korean).")],
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    mode: Annotated[Optional[str], typer.Option("--mode", "-m", help="bm25, dense or hybrid (default: retrieval.mode).", show_default=False)] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", "-k", help="Hits to show (default: retrieval.top_k).", show_default=False)] = None,
    index: Annotated[Optional[Path], typer.Option("--index", help="Index directory (default: index.dir).", show_default=False)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Search the index with BM25, dense or hybrid retrieval."""
    from krqa.wiring import open_index  # start-up time: `krqa --help` imports every command module

    cfg = get_config(config, overrides)
    retriever = open_index(cfg, index)
    started = time.perf_counter()
    hits = retriever.search(query, top_k=top_k, mode=mode)
    ms = (time.perf_counter() - started) * 1000
    used = mode or cfg.retrieval.mode
    if json_out:
        print_json({"query": query, "mode": used, "ms": round(ms, 1), "hits": [h.to_json() for h in hits]})
        return

    table = Table(title=f"{used} · {len(hits)} hits · {ms:.0f} ms", show_lines=True)
    for name, kw in (("#", {"justify": "right"}), ("score", {"justify": "right"}), ("title", {}), ("section", {}), ("snippet", {"ratio": 1})):
        table.add_column(name, **kw)
    for i, h in enumerate(hits, 1):
        snippet = " ".join(h.text.split())
        snippet = snippet if len(snippet) <= SNIPPET_CHARS else snippet[:SNIPPET_CHARS] + "…"
        table.add_row(str(i), f"{h.score:.3f}", h.title, h.section, snippet)
    Console().print(table)
    if not hits:
        typer.echo("no chunk contains any of the query's terms", err=True)

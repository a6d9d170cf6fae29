"""``krqa serve``: the HTTP service (POST /answer, /answer/batch, /search; GET /health, /ready, /metrics, /docs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from krqa.cli.common import ConfigOpt, SetOpt, apply_flags, get_config


def serve(
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    host: Annotated[Optional[str], typer.Option("--host", help="Bind address (default serve.host, 127.0.0.1).", show_default=False)] = None,
    port: Annotated[Optional[int], typer.Option("--port", help="TCP port (default serve.port; 0 picks a free one).", show_default=False)] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="uvicorn worker processes, each loading its own model.", show_default=False)] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="transformers or vllm (needs the vllm extra).", show_default=False)] = None,
    adapter: Annotated[Optional[Path], typer.Option("--adapter", help="LoRA adapter directory (default model.adapter).", show_default=False)] = None,
    rag: Annotated[Optional[bool], typer.Option("--rag/--no-rag", help="Prepend retrieved contexts (default predict.rag, as in krqa predict).", show_default=False)] = None,
) -> None:
    """Serve answers over HTTP; the model, adapter and index load once at start-up.

    Set KRQA_API_KEY to require 'Authorization: Bearer <key>' on everything except /health and /ready.
    """
    from krqa.serving.server import run  # start-up time: `krqa --help` imports every command module
    from krqa.wiring import resolve_adapter  # start-up time: `krqa --help` imports every command module

    cfg = get_config(config, overrides, {
        "serve.host": ("--host", host), "serve.port": ("--port", port), "serve.workers": ("--workers", workers),
        "serve.backend": ("--backend", backend), "predict.rag": ("--rag", rag),
    })
    if adapter is not None:
        cfg = apply_flags(cfg, {"model.adapter": ("--adapter", resolve_adapter(cfg, str(adapter)))})

    run(cfg)

"""Options every command shares, and the helpers that turn them into a validated config."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from krqa.config import KrqaConfig, load_config

ConfigOpt = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", help="YAML preset (default: configs/cpu-demo.yaml).", show_default=False),
]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override one field, e.g. --set retrieval.top_k=10 (repeatable).", show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
CorpusOpt = Annotated[
    Optional[list[Path]],
    typer.Option("--corpus", help="Dump to use instead of corpus.sources (repeatable; format detected).", show_default=False),
]

WorkersOpt = Annotated[
    Optional[int],
    typer.Option("--workers", "-w", min=0, help="Processes that read, clean, chunk and tokenize pieces of the dumps (default corpus.workers; 0 = all cores). The output does not depend on it.", show_default=False),
]


def get_config(config: Path | None, overrides: list[str] | None, **fields: Any) -> KrqaConfig:
    """Load the preset, then apply ``--set`` and then the command's own flags (``section.field=value``)."""
    sets = list(overrides or [])
    sets += [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in fields.items() if v is not None]
    return load_config(config, sets)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()

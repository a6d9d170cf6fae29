"""Options every command shares, and the helpers that turn them into a validated config."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from pydantic import ValidationError

from krqa.config import KrqaConfig, load_config
from krqa.configbase import Section
from krqa.errors import InputError

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
    typer.Option("--corpus", help="Dump file, or folder of wikiextractor output, to use instead of corpus.sources (repeatable; format detected).", show_default=False),
]

WorkersOpt = Annotated[
    Optional[int],
    typer.Option("--workers", "-w", min=0, help="Processes that read, clean, chunk and tokenize pieces of the dumps (default corpus.workers; 0 = all cores). The output does not depend on it.", show_default=False),
]


def get_config(config: Path | None, overrides: list[str] | None, flags: dict[str, tuple[str, Any]] | None = None) -> KrqaConfig:
    """Load the preset, apply ``--set``, then the command's own flags: ``{"section.field": ("--flag", value)}``, a
    value of None leaves the field alone. A flag is a typed update of its section, validated by the section's own
    field rules, so ``--top-k 0`` fails exactly as ``retrieval.top_k: 0`` in the YAML would."""
    return apply_flags(load_config(config, overrides), flags or {})


def apply_flags(cfg: KrqaConfig, flags: dict[str, tuple[str, Any]]) -> KrqaConfig:
    """``cfg`` with each ``{"section.field": ("--flag", value)}`` whose value is not None applied."""
    for dotted, (flag, value) in flags.items():
        if value is not None:
            cfg = _update(cfg, dotted.split("."), value, flag)
    return cfg


def _update(section: Section, path: list[str], value: Any, flag: str) -> Any:
    head, rest = path[0], path[1:]
    new = _update(getattr(section, head), rest, value, flag) if rest else value
    try:
        return type(section).model_validate({**dict(section), head: new})
    except ValidationError as exc:
        raise InputError(f"{flag} {value!r}: {exc.errors()[0]['msg']}") from None


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()

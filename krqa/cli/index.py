"""``krqa build-index``: Build BM25 + FAISS indexes over the chunks (issue 4)."""

from __future__ import annotations

from krqa.cli.common import ConfigOpt, SetOpt
from krqa.errors import NotImplementedYet


def build_index(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Build BM25 + FAISS indexes over the chunks (issue 4)."""
    raise NotImplementedYet("krqa build-index: not implemented yet")

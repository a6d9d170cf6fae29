"""``krqa build-corpus``: Read dumps and write the chunk store (issue 3)."""

from __future__ import annotations

from krqa.cli.common import ConfigOpt, SetOpt
from krqa.errors import NotImplementedYet


def build_corpus(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Read dumps and write the chunk store (issue 3)."""
    raise NotImplementedYet("krqa build-corpus: not implemented yet")

"""``krqa search``: Search the index (issue 4)."""

from __future__ import annotations

from krqa.cli.common import ConfigOpt, SetOpt
from krqa.errors import NotImplementedYet


def search(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Search the index (issue 4)."""
    raise NotImplementedYet("krqa search: not implemented yet")

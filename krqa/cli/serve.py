"""``krqa serve``: HTTP service (issue 7)."""

from __future__ import annotations

from krqa.cli.common import ConfigOpt, SetOpt
from krqa.errors import NotImplementedYet


def serve(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """HTTP service (issue 7)."""
    raise NotImplementedYet("krqa serve: not implemented yet")

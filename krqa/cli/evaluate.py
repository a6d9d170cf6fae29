"""``krqa evaluate``: Official scores of a prediction file (issue 5)."""

from __future__ import annotations

from krqa.cli.common import ConfigOpt, SetOpt
from krqa.errors import NotImplementedYet


def evaluate(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Official scores of a prediction file (issue 5)."""
    raise NotImplementedYet("krqa evaluate: not implemented yet")

"""``krqa predict``: Write a competition prediction file (issue 5)."""

from __future__ import annotations

from krqa.cli.common import ConfigOpt, SetOpt
from krqa.errors import NotImplementedYet


def predict(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Write a competition prediction file (issue 5)."""
    raise NotImplementedYet("krqa predict: not implemented yet")

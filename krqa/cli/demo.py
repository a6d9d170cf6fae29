"""``krqa demo``: End-to-end demo on embedded defaults (issue 8)."""

from __future__ import annotations

from krqa.cli.common import ConfigOpt, SetOpt
from krqa.errors import NotImplementedYet


def demo(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """End-to-end demo on embedded defaults (issue 8)."""
    raise NotImplementedYet("krqa demo: not implemented yet")

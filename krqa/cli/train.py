"""``krqa train``: Two-stage LoRA training (issue 6)."""

from __future__ import annotations

from krqa.cli.common import ConfigOpt, SetOpt
from krqa.errors import NotImplementedYet


def train(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Two-stage LoRA training (issue 6)."""
    raise NotImplementedYet("krqa train: not implemented yet")

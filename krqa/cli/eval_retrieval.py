"""``krqa eval-retrieval``: Recall@k / MRR on SQuAD-format QA (issue 4)."""

from __future__ import annotations

from krqa.cli.common import ConfigOpt, SetOpt
from krqa.errors import NotImplementedYet


def eval_retrieval(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Recall@k / MRR on SQuAD-format QA (issue 4)."""
    raise NotImplementedYet("krqa eval-retrieval: not implemented yet")

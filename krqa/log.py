"""Logging to stderr so stdout stays clean for ``--json`` output."""

from __future__ import annotations

import logging
import sys

_FORMAT = "%(asctime)s %(levelname).1s %(name)s: %(message)s"


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    # The handler filters too: a library that sets its own logger to DEBUG when it is imported (bm25s does,
    # after this runs) must not print below the chosen level.
    handler.setLevel(level)
    root.addHandler(handler)
    root.setLevel(level)
    # faiss.loader names the SIMD build it tried, at INFO, every time faiss is imported.
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "transformers", "sentence_transformers", "bm25s", "faiss.loader"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def progress_disabled() -> bool:
    """Progress bars stay on unless logging is quieted, so scripts can silence everything with --quiet."""
    return logging.getLogger().level > logging.INFO

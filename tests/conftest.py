"""Shared fixtures: paths to the repo's sample data and to ../shared/data (skipped cleanly when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("KRQA_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set KRQA_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def nikl_dir(shared_data: Path) -> Path:
    path = shared_data / "nikl_culture_qa"
    if not path.is_dir():
        pytest.skip(f"NIKL files not found at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_cfg(tmp_path_factory: pytest.TempPathFactory):
    """The tiny-test config with its tiny random model cached once per session (tests derive variants with
    ``model_copy``); nothing it names is downloaded."""
    from krqa.config import load_config

    cache = tmp_path_factory.mktemp("tiny-models")
    return load_config(REPO / "configs" / "tiny-test.yaml", [f"model.cache_dir={cache}"])


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_cfg):
    from krqa.generation.lm import load_tokenizer

    return load_tokenizer(tiny_cfg.model)


@pytest.fixture(scope="session")
def tiny_bm25_index(tiny_cfg, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BM25-only index over the bundled sample dumps (seconds to build; no encoder)."""
    from krqa.index.build import build_index

    out = tmp_path_factory.mktemp("tiny-bm25") / "index"
    cfg = tiny_cfg.model_copy(update={"index": tiny_cfg.index.model_copy(update={"dir": str(out), "dense": tiny_cfg.index.dense.model_copy(update={"backend": "none"})}),
                                      "retrieval": tiny_cfg.retrieval.model_copy(update={"mode": "bm25"})})
    build_index(cfg.corpus, cfg.index, out_dir=out)
    return out

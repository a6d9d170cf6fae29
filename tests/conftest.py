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

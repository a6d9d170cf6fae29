"""The held-out KorQuAD reading set and its BM25 index, shared by the benches that answer it
(bench_answer_quality.py ``sa``, bench_model_ladder.py ``reading``), so both read the same items from the same
passages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KORQUAD = REPO.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev_part_a.json"
BM25 = ["--set", "index.dense.backend=none", "--set", "retrieval.mode=bm25"]


def prepare(work: Path) -> tuple[Path, list[str]]:
    """``work/reading`` (``krqa data reading-set``: 선다형 + 단답형 items split by article) and
    ``work/index-korquad-bm25`` (the part's paragraphs, BM25 only: KorQuAD questions share their words with their
    paragraph, and on 2 cores the dense encoding took over half an hour), each built when absent. Returns the reading
    directory and the ``--set`` flags that answer from that index with the cpu-demo config."""
    reading, index = work / "reading", work / "index-korquad-bm25"
    krqa = [sys.executable, "-m", "krqa"]
    if not (reading / "heldout.json").is_file():
        subprocess.run([*krqa, "data", "reading-set", str(KORQUAD), "--out", str(reading)], check=True, cwd=REPO)
    if not (index / "manifest.json").is_file():
        subprocess.run([*krqa, "build-index", "-c", "configs/cpu-demo.yaml", "--corpus", str(KORQUAD), "--out", str(index), *BM25],
                       check=True, cwd=REPO)
    return reading, ["--set", f"index.dir={index.resolve()}", *BM25]

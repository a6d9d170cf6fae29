"""The run directory: everything needed to reproduce, resume and audit a training run.

Layout::

    config.yaml            resolved config (after --set and flags)
    run.json               git commit, krqa version, base model, data and context-cache hashes, command line
    contexts.json          stage-2 retrieval cache (see krqa.training.contexts)
    raft.json              per-example RAFT decisions of stage 2
    <stage>/adapter        best LoRA adapter of each stage of the stage table (stage1, stage2, dpo, grpo)
    <stage>/checkpoints    trainer checkpoints (optimizer, scheduler, RNG, trainer_state.json) for --resume
    stage2/merged_base     the merged base of stage2_init=merge
    samples-dpo.json, pairs-dpo.json, samples-grpo.json   DPO/GRPO sample caches and pairs
    metrics.json           per stage: fingerprint, loss history, best epoch, tokens, time
    loss_curve.png         train and dev loss of every stage trained
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from krqa import __version__
from krqa.fsutil import atomic_write_json, atomic_write_text, sha256_file

def git_commit(path: Path) -> dict[str, Any]:
    """The code version the run used; 'unknown' outside a git checkout (e.g. an installed wheel)."""
    try:
        head = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return {"commit": "unknown", "dirty": None}
        status = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10)
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


def hash_path(path: Path) -> str:
    """sha256 of a file, or of a directory's sorted (relative path, file hash) list."""
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()


class RunDir:
    """Paths and JSON records of one run directory; writes are atomic so an interrupted run leaves valid files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def adapter(self, name: str) -> Path:
        return self.root / name / "adapter"

    def checkpoints(self, name: str) -> Path:
        return self.root / name / "checkpoints"

    def merged_base(self) -> Path:
        return self.root / "stage2" / "merged_base"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.json"

    @property
    def plot_path(self) -> Path:
        return self.root / "loss_curve.png"

    @property
    def contexts_path(self) -> Path:
        return self.root / "contexts.json"

    def latest_checkpoint(self, name: str) -> Path | None:
        ckpts = [p for p in self.checkpoints(name).glob("checkpoint-*") if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()]
        return max(ckpts, key=lambda p: int(p.name.split("-")[-1])) if ckpts else None

    def read_json(self, name: str) -> dict[str, Any]:
        path = self.root / name
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def update_json(self, name: str, updates: dict[str, Any]) -> dict[str, Any]:
        data = self.read_json(name)
        data.update(updates)
        atomic_write_json(self.root / name, data)
        return data

    def metrics(self) -> dict[str, Any]:
        return self.read_json("metrics.json")

    def write_stage_metrics(self, stage: str, record: dict[str, Any]) -> dict[str, Any]:
        return self.update_json("metrics.json", {stage: record})

    def write_config(self, text: str) -> None:
        atomic_write_text(self.root / "config.yaml", text)

    def record_start(self, project_dir: Path, base_model: str, base_path: str, data_hashes: dict[str, str]) -> dict[str, Any]:
        run = self.read_json("run.json")
        history = run.get("invocations", [])
        history.append({"argv": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        return self.update_json(
            "run.json",
            {
                "krqa_version": __version__,
                "git": git_commit(project_dir),
                "base_model": base_model,
                "base_model_path": base_path,
                "data_sha256": data_hashes,
                "invocations": history,
            },
        )

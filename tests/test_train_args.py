"""The Trainer arguments of a stage mean the same on every transformers version pyproject allows."""

from __future__ import annotations

from pathlib import Path

from krqa.training.config import TrainConfig
from krqa.training.stage import renamed_args


def test_warmup_is_a_share_of_the_steps(tmp_path: Path) -> None:
    from transformers import TrainingArguments

    # transformers 4.x reads warmup_steps as a step count: passing the ratio there would warm up for 0 steps.
    tc = TrainConfig(warmup_ratio=0.1, scheduler="linear")
    args = TrainingArguments(output_dir=str(tmp_path), lr_scheduler_type="linear", use_cpu=True, report_to="none", **renamed_args(tc))
    assert args.get_warmup_steps(200) == 20 and args.get_warmup_steps(1000) == 100

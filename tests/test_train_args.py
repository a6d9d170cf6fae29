"""The Trainer arguments of a stage mean the same on every transformers version pyproject allows."""

from __future__ import annotations

from pathlib import Path

from krqa.training.config import StageConfig, TrainConfig
from krqa.training.stage import planned_steps, training_args


def test_warmup_is_a_share_of_the_steps(tmp_path: Path) -> None:
    # transformers 4.x reads warmup_steps as a step count: passing the ratio there would warm up for 0 steps.
    tc = TrainConfig(warmup_ratio=0.1, scheduler="linear")
    args = training_args(tc, StageConfig(), tmp_path, "fp32", has_dev=False)
    assert args.get_warmup_steps(200) == 20 and args.get_warmup_steps(1000) == 100


def test_planned_steps_follow_the_trainer_arithmetic() -> None:
    tc = TrainConfig(batch_size=4, grad_accum=4)
    assert planned_steps(100, tc, StageConfig(epochs=2.0), world_size=1) == 14  # 25 batches -> 7 updates per epoch
    assert planned_steps(100, tc, StageConfig(max_steps=5), world_size=1) == 5

"""The stage table: every training stage krqa knows, in the order a run trains them.

A row (:class:`~krqa.training.stage.StageSpec`) names the stage, its config section, its input checks, how it
prepares its trainer, its ``--stage`` value, its label in tables and its colour in the loss curve. The planner
runs the checks of the selected rows, :func:`krqa.training.stage.run_stage` trains each one, the loss curve and
``krqa ablate --run`` read the labels and colours, and ``krqa train --stage`` offers the ``cli`` values. Adding a
stage is adding a row here (tests/test_train_stages.py registers a toy stage this way).
"""

from __future__ import annotations

from krqa.errors import InputError
from krqa.training.grpo import prepare_grpo
from krqa.training.preference import prepare_dpo
from krqa.training.rlplan import check_rl
from krqa.training.sft import check_stage1, check_stage2, prepare_stage1, prepare_stage2
from krqa.training.stage import StageSpec

SFT_ALL = "all"

STAGES: dict[str, StageSpec] = {
    spec.name: spec
    for spec in (
        StageSpec("stage1", "stage 1", "1", lambda tc: tc.stage1, check_stage1, prepare_stage1, "tab:blue"),
        StageSpec("stage2", "stage 2", "2", lambda tc: tc.stage2, check_stage2, prepare_stage2, "tab:orange"),
        StageSpec("dpo", "DPO", "dpo", lambda tc: tc.dpo, lambda plan: check_rl(plan, "dpo"), prepare_dpo, "tab:green", label_after_upstream=True),
        StageSpec("grpo", "GRPO", "grpo", lambda tc: tc.grpo, lambda plan: check_rl(plan, "grpo"), prepare_grpo, "tab:red", label_after_upstream=True),
    )
}


def cli_choices() -> list[str]:
    """The ``--stage`` values: each row's own and ``all`` (stage 1, and stage 2 with --rag)."""
    return [*(spec.cli for spec in STAGES.values()), SFT_ALL]


def select(stage: str, rag: bool) -> list[str]:
    """The stage names ``--stage`` selects, in table order; ``all`` is stage 1, plus stage 2 with --rag."""
    if stage == SFT_ALL:
        return ["stage1", "stage2"] if rag else ["stage1"]
    for spec in STAGES.values():
        if stage in (spec.cli, spec.name):
            return [spec.name]
    raise InputError(f"--stage: {stage!r} is not one of {', '.join(cli_choices())}")

"""The stage table and its one runner: a stage is one table row; a finished stage is kept only on the same inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from krqa.config import KrqaConfig
from krqa.qa.data import load_items, save_items
from krqa.training import stages
from krqa.training.config import StageConfig
from krqa.training.stage import StageContext, StageJob, StageSpec, retrain_reason
from krqa.training.trainer import train


def _cfg(tiny_config, out: Path, *sets: str) -> KrqaConfig:
    return tiny_config(f"train.output_dir={out}", *sets)


def test_retrain_reason_names_what_changed() -> None:
    parts = {"data": "d", "settings": "s", "base": "b", "upstream": ""}
    finished = {"finished": True, "fingerprint_parts": dict(parts)}
    assert retrain_reason(finished, parts) is None
    assert retrain_reason({**finished, "fingerprint_parts": {**parts, "data": "old"}}, parts) == "its data changed"
    assert retrain_reason({**finished, "fingerprint_parts": {**parts, "base": "x", "upstream": "y"}}, parts) == "the base model and the adapter it continues changed"
    assert retrain_reason({"finished": True}, parts) == "its record predates fingerprints"
    assert retrain_reason({"finished": False}, parts) is None  # an unfinished stage resumes or restarts; nothing to keep


def test_select_reads_the_table() -> None:
    assert stages.select("all", rag=False) == ["stage1"] and stages.select("all", rag=True) == ["stage1", "stage2"]
    assert stages.select("2", rag=False) == ["stage2"] and stages.select("grpo", rag=False) == ["grpo"]
    from krqa.errors import InputError

    with pytest.raises(InputError, match=r"--stage: 'ppo' is not one of 1, 2, dpo, grpo, all"):
        stages.select("ppo", rag=False)


@pytest.mark.slow
def test_a_toy_stage_is_one_table_row(tiny_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage that trains a new adapter on the dev questions, registered by one entry: the planner runs its
    check, the runner trains, records and skips it, the loss curve and ``krqa ablate --run`` name it."""
    from krqa.ablation import run_adapters
    from krqa.training import lora
    from krqa.training.sft import encode_stage, sft_job, stage_examples
    from krqa.training.external import SourceItem

    checked: list[str] = []

    def check(plan) -> None:
        checked.append("toy")

    def prepare(ctx: StageContext, spec: StageSpec) -> StageJob:
        plan, tc = ctx.plan, ctx.plan.cfg.train
        examples = stage_examples([SourceItem(i, "dev") for i in plan.dev_items], "first", mc_target=ctx.mc_target)
        data = encode_stage(tc, ctx.builder, ctx.tokenizer, examples, [])

        def init_model():
            return lora.new_adapter(lora.load_base_for_training(plan.cfg.model, tc, plan.precision), tc.lora)

        return sft_job(ctx, spec, data, init_model, [])

    toy = StageSpec("toy", "toy stage", "toy", lambda tc: StageConfig(epochs=1.0, max_steps=2, learning_rate=1e-3), check, prepare, "tab:purple")
    monkeypatch.setitem(stages.STAGES, "toy", toy)
    assert "toy" in stages.cli_choices()

    run = tmp_path / "run"
    summary = train(_cfg(tiny_config, run), stage="toy")
    assert checked == ["toy"] and summary["stages"]["toy"]["steps"] == 2 and not summary["stages"]["toy"]["skipped"]
    record = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["toy"]
    assert record["finished"] and record["init_adapter"] is None and len(record["train_loss"]) == 2
    assert (run / "toy" / "adapter" / "adapter_config.json").is_file() and (run / "loss_curve.png").is_file()
    assert run_adapters(run) == {"toy stage": str(run / "toy" / "adapter")}
    assert train(_cfg(tiny_config, run), stage="toy", resume=True)["stages"]["toy"]["skipped"]


@pytest.mark.slow
def test_resume_retrains_a_finished_stage_when_its_data_changed(tiny_config, repo: Path, tmp_path: Path) -> None:
    """The step count is fixed by max_steps, so only the fingerprint can tell the old adapter is stale."""
    run = tmp_path / "run"
    items = load_items(repo / "corpus" / "sample_qa.json")
    train_file = tmp_path / "train.json"
    save_items(items, train_file)
    sets = (f"train.train_file={train_file}", "train.stage1.max_steps=1", "train.dev_file=null")
    first = train(_cfg(tiny_config, run, *sets), stage="1")["stages"]["stage1"]
    assert first["steps"] == 1 and not first["skipped"]

    same = train(_cfg(tiny_config, run, *sets), stage="1", resume=True)["stages"]["stage1"]
    assert same["skipped"]

    save_items(items[: len(items) // 2], train_file)  # the training file changed; the step count did not
    again = train(_cfg(tiny_config, run, *sets), stage="1", resume=True)["stages"]["stage1"]
    assert not again["skipped"] and again["retrained_because"] == "its data changed" and again["steps"] == 1
    record = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["stage1"]
    assert record["examples"] == len(items) // 2 and record["resumed_from"] is None

    lr = train(_cfg(tiny_config, run, *sets, "train.stage1.learning_rate=0.01"), stage="1", resume=True)["stages"]["stage1"]
    assert lr["retrained_because"] == "its settings changed"

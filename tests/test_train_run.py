"""End-to-end trainer runs on the tiny-test model: bad inputs, loss going down, resume, both stages, reload."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from krqa.config import KrqaConfig
from krqa.errors import InputError
from krqa.training.sft import dev_items
from krqa.training.trainer import plan_run, train


def _cfg(tiny_config, out: Path, *sets: str) -> KrqaConfig:
    return tiny_config(f"train.output_dir={out}", *sets)


def _epoch_means(points: list[dict]) -> list[float]:
    by_epoch: dict[int, list[float]] = {}
    for p in points:
        by_epoch.setdefault(int(p["epoch"] - 1e-9), []).append(p["loss"])
    return [sum(v) / len(v) for _, v in sorted(by_epoch.items())]


# ---- bad input: one-line InputError before anything is loaded or written -------------------------------------


def test_empty_training_set(tiny_config, repo: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("[]", encoding="utf-8")
    with pytest.raises(InputError, match=r"empty\.json: no training examples after filtering"):
        plan_run(_cfg(tiny_config, tmp_path / "run", f"train.train_file={empty}"))
    assert not (tmp_path / "run").exists()


def test_missing_base_model(tiny_config, repo: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        plan_run(_cfg(tiny_config, tmp_path / "run", f"model.base={tmp_path / 'no-such-model'}"))
    assert "\n" not in str(err.value) and "no-such-model" in str(err.value)
    assert not (tmp_path / "run").exists()


def test_missing_index_for_rag(tiny_config, repo: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"index not found.*krqa build-index --config configs/tiny-test\.yaml"):
        plan_run(_cfg(tiny_config, tmp_path / "run", f"index.dir={tmp_path / 'noindex'}"), rag=True, config_path="configs/tiny-test.yaml")


def test_stage2_needs_stage1(tiny_config, repo: Path, tmp_path: Path) -> None:
    index = tmp_path / "index"
    index.mkdir()
    (index / "manifest.json").write_text("{}", encoding="utf-8")
    with pytest.raises(InputError, match=r"stage1/adapter: stage-1 adapter not found"):
        plan_run(_cfg(tiny_config, tmp_path / "run", f"index.dir={index}"), rag=True, stage="2")


def test_qlora_without_gpu(tiny_config, repo: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(InputError, match=r"train\.qlora: 4-bit QLoRA needs a CUDA GPU"):
        plan_run(_cfg(tiny_config, tmp_path / "run", "train.qlora=true"))


def test_resume_onto_other_base(tiny_config, repo: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "stage1" / "adapter").mkdir(parents=True)
    (run / "stage1" / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "meta-llama/Other-7B"}), encoding="utf-8")
    with pytest.raises(InputError, match=r"adapter_config\.json: adapter belongs to base model 'meta-llama/Other-7B'"):
        plan_run(_cfg(tiny_config, run), resume=True)
    (run / "run.json").write_text(json.dumps({"base_model": "gguf:gemma3-270m"}), encoding="utf-8")
    with pytest.raises(InputError, match=r"run\.json: run was trained on base model 'gguf:gemma3-270m'"):
        plan_run(_cfg(tiny_config, run), resume=True)


def test_cli_bad_input_exit_code(repo: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("[]", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "krqa", "train", "--config", str(repo / "configs" / "tiny-test.yaml"), "--set", f"train.train_file={empty}", "--output", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        cwd=repo,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("krqa: error:") and "no training examples" in proc.stderr
    assert proc.stdout == "" and not (tmp_path / "run").exists()


# ---- real runs ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_stage1_loss_goes_down_and_resume(tiny_config, repo: Path, tmp_path: Path) -> None:
    from krqa.generation.lm import load_model

    run = tmp_path / "run"
    # interrupted: the run stops after 2 of its 12 optimizer steps (3 epochs x 32 items / batch 8)
    first = train(_cfg(tiny_config, run, "train.stage1.max_steps=2"), stage="1")
    assert first["stages"]["stage1"]["steps"] == 2
    ckpt = run / "stage1" / "checkpoints" / "checkpoint-2"
    assert (ckpt / "trainer_state.json").is_file() and (ckpt / "optimizer.pt").is_file()
    # safetensors writes 0600; checkpoints and adapters get the usual modes like every other output
    from krqa.fsutil import file_mode

    for root in (ckpt, run / "stage1" / "adapter"):
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*.safetensors")}
        assert modes and set(modes.values()) == {file_mode()}, modes

    cfg = _cfg(tiny_config, run)
    resumed = train(cfg, stage="1", resume=True)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["stage1"]
    assert metrics["resumed_from"] == str(ckpt) and metrics["steps"] == metrics["planned_steps"] == 12
    steps = [p["step"] for p in metrics["train_loss"]]
    assert steps == list(range(1, 13))  # history carried over from the checkpoint, no step trained twice
    assert resumed["stages"]["stage1"]["first_train_loss"] == first["stages"]["stage1"]["first_train_loss"]

    means = _epoch_means(metrics["train_loss"])
    assert len(means) == 3 and means[-1] < means[0]
    assert metrics["dev_loss"][-1]["loss"] < metrics["dev_loss"][0]["loss"]
    assert metrics["best_epoch"] is not None and metrics["tokens_seen"] > 0

    again = train(cfg, stage="1", resume=True)  # finished: kept, not retrained
    assert again["stages"]["stage1"]["skipped"]

    adapter = run / "stage1" / "adapter"
    from safetensors import safe_open

    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as fh:
        keys = list(fh.keys())
    assert keys and all("lora_" in k for k in keys)
    assert not any("lm_head" in k or "embed" in k for k in keys)
    model = load_model(cfg.model, adapter=str(adapter))
    assert any("lora_" in name for name, _ in model.named_parameters())
    for name in ("config.yaml", "run.json", "metrics.json", "loss_curve.png"):
        assert (run / name).is_file(), name
    assert json.loads((run / "run.json").read_text(encoding="utf-8"))["git"]["commit"] != ""


@pytest.mark.slow
def test_two_stages_with_rag(tiny_config, repo: Path, tmp_path: Path, tiny_hybrid_index: Path) -> None:
    from krqa.generation.lm import load_model

    run = tmp_path / "run"
    sets = [f"index.dir={tiny_hybrid_index}", "train.stage1.epochs=1", "train.stage2.epochs=1"]
    cfg = _cfg(tiny_config, run, *sets)
    summary = train(cfg, rag=True)
    assert set(summary["stages"]) == {"stage1", "stage2"}
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    s2 = metrics["stage2"]
    assert s2["raft"]["examples"] == 32 and s2["contexts_cache"]["reused"] is False
    assert s2["encode"]["prompt_tokens"] > metrics["stage1"]["encode"]["prompt_tokens"]  # contexts are in the prompts
    cache = json.loads((run / "contexts.json").read_text(encoding="utf-8"))
    assert len(cache["contexts"]) == 32 and all(len(v) == 3 for v in cache["contexts"].values())
    raft = json.loads((run / "raft.json").read_text(encoding="utf-8"))
    assert len(raft["decisions"]) == 32 and raft["seed"] == cfg.train.seed
    run_info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert run_info["contexts_cache"]["sha256"] == cache["sha256"]
    assert (run / "loss_curve.png").stat().st_size > 1000
    for stage in ("stage1", "stage2"):
        model = load_model(cfg.model, adapter=str(run / stage / "adapter"))
        assert any("lora_" in name for name, _ in model.named_parameters())

    # stage 2 alone again: the retrieval cache is reused; merge mode writes its merged base beside the adapter
    merge = train(_cfg(tiny_config, run, *sets, "train.stage2_init=merge"), rag=True, stage="2")
    s2 = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["stage2"]
    assert s2["contexts_cache"]["reused"] is True and s2["stage2_init"] == "merge"
    base = merge["stages"]["stage2"]["base_for_adapter"]
    assert Path(base, "config.json").is_file()
    adapter_cfg = json.loads((run / "stage2" / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
    assert adapter_cfg["base_model_name_or_path"] == base
    model = load_model(cfg.model.model_copy(update={"base": base}), adapter=str(run / "stage2" / "adapter"))
    assert any("lora_" in name for name, _ in model.named_parameters())


@pytest.mark.slow
def test_cli_json_keeps_stdout_clean(repo: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "krqa", "train", "--config", str(repo / "configs" / "tiny-test.yaml"), "--stage", "1", "--set", "train.stage1.max_steps=2", "--output", str(tmp_path / "run"), "--json"],
        capture_output=True,
        text=True,
        cwd=repo,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["stages"]["stage1"]["steps"] == 2 and Path(summary["loss_curve"]).is_file()
    shutil.rmtree(tmp_path / "run")


def test_max_dev_items_keeps_the_first_of_each_type(tiny_config, tmp_path: Path) -> None:
    from collections import Counter

    from krqa.qa.data import load_items

    cfg = _cfg(tiny_config, tmp_path / "run")
    every = dev_items(plan_run(cfg))
    capped = dev_items(plan_run(_cfg(tiny_config, tmp_path / "run", "train.max_dev_items=2")))
    assert len(every) == len(load_items(Path(cfg.train.dev_file)))
    assert Counter(i.question_type for i in capped) == {t: 2 for t in {i.question_type for i in every}}
    for qtype in {i.question_type for i in every}:
        assert [i.id for i in capped if i.question_type == qtype] == [i.id for i in every if i.question_type == qtype][:2]

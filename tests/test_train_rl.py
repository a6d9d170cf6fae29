"""krqa train --stage dpo|grpo on the tiny model: bad input, pairs, curriculum, end-to-end runs and --resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from krqa.config import KrqaConfig
from krqa.errors import InputError, KrqaError
from krqa.qa.data import QAItem, load_items, save_items
from krqa.training.grpo import difficulty_filter
from krqa.training.preference import make_pair
from krqa.training.rlconfig import CurriculumConfig, DpoConfig
from krqa.training.trainer import plan_run, train
from krqa.training.sampling import Sample

MC_Q = "설날 아침에 먹는 음식은? \\n 1\\t송편 2\\t떡국 3\\t팥죽 4\\t오곡밥"


def _cfg(tiny_config, out: Path, *sets: str) -> KrqaConfig:
    return tiny_config(f"train.output_dir={out}", *sets)


def _item(qtype: str, answer: str) -> QAItem:
    return QAItem(id="x", category="c", domain="d", question_type=qtype, topic_keyword="k", question=MC_Q if qtype == "선다형" else "질문", answer=answer)


# ---- pairs and curriculum on hand-made samples ----------------------------------------------------------------


def test_pair_rejects_the_worst_wrong_sample() -> None:
    item = _item("단답형", "만 나이#세는 나이")
    samples = [Sample("만 나이", "만 나이", 1.0), Sample("만나이", "만나이", 0.0), Sample("나이", "나이", 0.0)]
    pair, why = make_pair(item, "p", samples, DpoConfig(), "number")
    assert why == "pair" and pair is not None
    assert pair.chosen == "만 나이" and pair.rejected in ("만나이", "나이") and pair.chosen_from == "gold"


def test_no_pair_when_every_sample_is_right() -> None:
    samples = [Sample("떡국", "2", 1.0)] * 3
    assert make_pair(_item("선다형", "2"), "p", samples, DpoConfig(), "cloze") == (None, "no wrong sample")


def test_mc_pairs_take_the_training_target_form() -> None:
    samples = [Sample("3", "3", 0.0), Sample("떡국", "2", 1.0)]
    pair, _ = make_pair(_item("선다형", "2"), "p", samples, DpoConfig(), "cloze")
    assert pair is not None and (pair.chosen, pair.rejected) == ("떡국", "팥죽")
    pair, _ = make_pair(_item("선다형", "2"), "p", samples, DpoConfig(), "number")
    assert pair is not None and (pair.chosen, pair.rejected) == ("2", "3")


def test_desc_pairs_need_a_margin_and_best_can_replace_gold() -> None:
    item = _item("서술형", "설날에는 떡국을 먹는다.")
    samples = [Sample("a", "설날에는 떡국을 먹는다고 한다.", 0.8), Sample("b", "추석에는 송편을 먹는다.", 0.7), Sample("c", "모른다.", 0.1)]
    pair, _ = make_pair(item, "p", samples, DpoConfig(chosen="best", margin=0.2), "number")
    assert pair is not None and pair.chosen_from == "sample" and pair.chosen == "설날에는 떡국을 먹는다고 한다." and pair.rejected == "모른다."
    close = [Sample("a", "설날에는 떡국을 먹는다고 한다.", 0.8), Sample("b", "설날 떡국", 0.7)]
    assert make_pair(item, "p", close, DpoConfig(chosen="best", margin=0.2), "number") == (None, "no wrong sample")


def test_curriculum_drops_always_right_and_always_wrong() -> None:
    items = [QAItem(id=i, category="c", domain="d", question_type="단답형", topic_keyword="k", question="q", answer="a") for i in "abc"]
    scored = {"a": [Sample("", "", 1.0)] * 3, "b": [Sample("", "", 0.0)] * 3, "c": [Sample("", "", 1.0), Sample("", "", 0.0)]}
    kept, counts = difficulty_filter(items, scored, CurriculumConfig(samples=3))
    assert [i.id for i in kept] == ["c"] and counts == {"always_right": 1, "always_wrong": 1, "kept": 1}
    kept, _ = difficulty_filter(items, scored, CurriculumConfig(samples=3, drop_always_wrong=False))
    assert [i.id for i in kept] == ["b", "c"]


# ---- bad input: one line, nothing written ---------------------------------------------------------------------


def _fake_stage1(run: Path, base: str) -> None:
    adapter = run / "stage1" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base}), encoding="utf-8")


def test_run_adapters_names_rows(tmp_path: Path) -> None:
    from krqa.ablation import run_adapters

    run = tmp_path / "run"
    _fake_stage1(run, "tiny-random")
    for stage in ("stage2", "grpo"):
        shutil.copytree(run / "stage1", run / stage)
    metrics = {"stage1": {"finished": True}, "stage2": {"finished": True}, "grpo": {"finished": True, "init_adapter": str(run / "stage2" / "adapter")}}
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    assert list(run_adapters(run)) == ["stage 1", "stage 2", "stage 2 + GRPO"]
    with pytest.raises(InputError, match=r"no finished adapters"):
        run_adapters(tmp_path)


@pytest.mark.parametrize("stage", ["dpo", "grpo"])
def test_no_dev_set(tiny_config, tmp_path: Path, stage: str) -> None:
    _fake_stage1(tmp_path / "run", "tiny-random")
    with pytest.raises(InputError, match=rf"train\.dev_file: a {stage} run needs a dev set") as err:
        plan_run(_cfg(tiny_config, tmp_path / "run", "train.dev_file=null"), stage)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["stage1"]


def test_no_sft_adapter(tiny_config, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no SFT adapter to start dpo from; train first"):
        plan_run(_cfg(tiny_config, tmp_path / "run"), "dpo")
    assert not (tmp_path / "run").exists()


def test_adapter_from_another_base(tiny_config, tmp_path: Path) -> None:
    _fake_stage1(tmp_path / "run", "meta-llama/Other-7B")
    with pytest.raises(InputError, match=r"adapter_config\.json: adapter belongs to base model 'meta-llama/Other-7B'"):
        plan_run(_cfg(tiny_config, tmp_path / "run"), "grpo")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["stage1"]


def test_cli_bad_input_exit_code(repo: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "krqa", "train", "--config", str(repo / "configs" / "tiny-test.yaml"), "--stage", "grpo",
                           "--set", "train.dev_file=null", "--output", str(tmp_path / "run")], capture_output=True, text=True, cwd=repo, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1].startswith("krqa: error: train.dev_file: a grpo run needs a dev set")
    assert not (tmp_path / "run").exists()


def test_rag_prompts_show_what_predict_shows(tiny_config, tmp_path: Path, tiny_bm25_index: Path, tiny_tokenizer) -> None:
    from krqa.training.rlplan import inference_contexts
    from krqa.training.sampling import build_prompts

    run = tmp_path / "run"
    _fake_stage1(run, "tiny-random")
    cfg = _cfg(tiny_config, run, f"index.dir={tiny_bm25_index}", "retrieval.mode=bm25", "predict.rag_types=[단답형, 서술형]")
    plan = plan_run(cfg, "dpo", rag=True).inputs["dpo"]
    contexts = inference_contexts(plan)
    by_type = {t: [contexts[i.id] for i in plan.train_items if i.question_type == t] for t in ("선다형", "단답형", "서술형")}
    assert all(c == [] for c in by_type["선다형"])  # not in predict.rag_types
    assert any(by_type["단답형"]) and all(len(c) <= cfg.retrieval.top_k for c in by_type["단답형"] + by_type["서술형"])
    cache = json.loads((run / "contexts.json").read_text(encoding="utf-8"))
    assert cache["top_k"] == max(cfg.train.raft.max_contexts, cfg.retrieval.top_k)  # the stage-2 cache, shared
    item = next(i for i in plan.train_items if contexts[i.id])
    prompt = build_prompts(plan, [item], contexts, tiny_tokenizer)[item.id]
    assert contexts[item.id][0].text[:20] in prompt
    assert build_prompts(plan, [item], {}, tiny_tokenizer)[item.id] != prompt


# ---- real runs on the tiny model ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sft_run(tiny_config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short stage-1 run whose adapter DPO and GRPO start from."""
    run = tmp_path_factory.mktemp("rl") / "sft"
    train(_cfg(tiny_config, run, "train.stage1.max_steps=4"), stage="1")
    return run


def _copy(sft_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(sft_run, run)
    return run


@pytest.mark.slow
def test_dpo_end_to_end_and_resume(tiny_config, repo: Path, tmp_path: Path, sft_run: Path) -> None:
    run = _copy(sft_run, tmp_path)
    assert json.loads((run / "metrics.json").read_text())["stage1"]["examples_by_source"] == {"train": 32}  # the stage-1 report
    sets = ("train.dpo.sampling.samples=2", "train.dpo.learning_rate=0.005", "train.dpo.epochs=2.0")
    first = train(_cfg(tiny_config, run, *sets, "train.dpo.max_steps=2"), stage="dpo")
    assert first["stages"]["dpo"]["steps"] == 2 and (run / "dpo" / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
    pairs = json.loads((run / "pairs-dpo.json").read_text(encoding="utf-8"))
    assert pairs["train"] and pairs["dev"] and all(p["chosen"] != p["rejected"] for p in pairs["train"])
    mtime = (run / "samples-dpo.json").stat().st_mtime_ns

    train(_cfg(tiny_config, run, *sets), stage="dpo", resume=True)
    rec = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["dpo"]
    assert rec["resumed_from"].endswith("checkpoint-2") and rec["samples"]["reused"]
    assert (run / "samples-dpo.json").stat().st_mtime_ns == mtime  # the samples were not drawn again
    assert [p["step"] for p in rec["train_loss"]] == list(range(1, rec["steps"] + 1)) and rec["steps"] > 2
    assert rec["train_loss"][-1]["loss"] < rec["train_loss"][0]["loss"]  # DPO starts at ln 2 and must go below it
    assert rec["dev_loss"][-1]["loss"] < 0.6931
    assert (run / "dpo" / "adapter" / "adapter_model.safetensors").is_file() and not (run / "dpo" / "adapter" / "ref").exists()
    assert json.loads((run / "dpo" / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]

    again = train(_cfg(tiny_config, run, *sets), stage="dpo", resume=True)
    assert again["stages"]["dpo"]["skipped"]

    # krqa ablate --run: the DPO adapter is a row named after the stage it continued
    from krqa.ablation import ablate, grid, run_adapters

    adapters = run_adapters(run)
    assert list(adapters) == ["stage 1", "stage 1 + DPO"] and adapters["stage 1 + DPO"] == str(run / "dpo" / "adapter")
    result = ablate(_cfg(tiny_config, run), repo / "corpus" / "sample_qa.json", grid(adapters, [False], ["generate"], [None]), tmp_path / "abl", per_type=1, n_boot=200)
    assert [r["name"] for r in result["rows"]] == ["stage 1 · no-RAG · generate", "stage 1 + DPO · no-RAG · generate"]
    assert all(set(r["scores"]) == {"선다형", "단답형", "서술형", "final"} for r in result["rows"])


def _small_train(repo: Path, tmp_path: Path, per_type: int = 2, types: tuple[str, ...] = ("선다형", "단답형", "서술형")) -> Path:
    """The first ``per_type`` sample questions of each type."""
    every = load_items(repo / "corpus" / "sample_qa.json")
    items = [i for t in types for i in [x for x in every if x.question_type == t][:per_type]]
    path = tmp_path / "train.json"
    save_items(items, path)
    return path


@pytest.mark.slow
def test_grpo_end_to_end_and_resume(tiny_config, repo: Path, tmp_path: Path, sft_run: Path) -> None:
    import torch
    from safetensors.torch import load_file

    run = _copy(sft_run, tmp_path)
    train_file = _small_train(repo, tmp_path)
    sets = (f"train.train_file={train_file}", "train.grpo.max_eval_items=4", "train.grpo.learning_rate=0.001",
            "train.grpo.curriculum={samples: 2, drop_always_right: true, drop_always_wrong: false}")
    train(_cfg(tiny_config, run, *sets, "train.grpo.max_steps=1"), stage="grpo")
    assert (run / "grpo" / "checkpoints" / "checkpoint-1").is_dir() and (run / "samples-grpo.json").is_file()
    summary = train(_cfg(tiny_config, run, *sets), stage="grpo", resume=True)
    rec = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["grpo"]
    assert rec["resumed_from"].endswith("checkpoint-1") and rec["steps"] > 1 and rec["curriculum"]["samples"]["reused"]
    assert rec["train_questions"] + rec["curriculum"]["always_right"] == 6
    official = [p["value"] for p in rec["train_official"]]
    assert official and all(0.0 <= v <= 1.0 for v in official)
    assert rec["dev_metric"]["name"] == "eval_reward" and rec["best_dev_metric"] is not None
    assert summary["stages"]["grpo"]["init_adapter"].endswith("stage1/adapter")
    before = load_file(str(run / "stage1" / "adapter" / "adapter_model.safetensors"))
    last = run / "grpo" / "checkpoints" / f"checkpoint-{rec['steps']}"  # the adapter kept is the best on dev, maybe the first
    after = load_file(str(last / "adapter_model.safetensors"))
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
def test_grpo_curriculum_that_drops_everything(tiny_config, repo: Path, tmp_path: Path, sft_run: Path) -> None:
    run = _copy(sft_run, tmp_path)
    short_only = _small_train(repo, tmp_path, 4, ("단답형",))  # the random model never writes a gold 단답형 answer
    with pytest.raises(InputError, match=r"the curriculum dropped all 4 train questions \(0 always right, 4 always wrong") as err:
        train(_cfg(tiny_config, run, f"train.train_file={short_only}", "train.grpo.curriculum={samples: 2}"), stage="grpo")
    assert "\n" not in str(err.value) and not (run / "grpo").exists() and "grpo" not in json.loads((run / "metrics.json").read_text())


@pytest.mark.slow
def test_nan_reward_stops_grpo(tiny_config, repo: Path, tmp_path: Path, sft_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from krqa.training.rewards import AnswerScorer

    monkeypatch.setattr(AnswerScorer, "score", lambda self, items, completions: [float("nan")] * len(items))
    run = _copy(sft_run, tmp_path)
    with pytest.raises(KrqaError, match=r"reward 'official' is nan for item") as err:
        train(_cfg(tiny_config, run, f"train.train_file={_small_train(repo, tmp_path, 1)}", "train.grpo.max_eval_items=2"), stage="grpo")
    assert "\n" not in str(err.value) and not (run / "grpo" / "adapter").exists()

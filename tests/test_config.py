from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from krqa.config import KrqaConfig, load_config, parse_override
from krqa.errors import ConfigError

PRESETS = ["cpu-demo.yaml", "kanana-8b.yaml", "kowiki-cpu.yaml", "tiny-test.yaml"]


@pytest.mark.parametrize("name", PRESETS)
def test_presets_validate(repo: Path, name: str) -> None:
    cfg = load_config(repo / "configs" / name)
    assert isinstance(cfg, KrqaConfig)
    assert Path(cfg.base_dir) == repo


def test_production_recipe_values(repo: Path) -> None:
    cfg = load_config(repo / "configs" / "kanana-8b.yaml")
    assert cfg.model.base == "kakaocorp/kanana-1.5-8b-base"
    assert (cfg.train.lora.r, cfg.train.lora.alpha, cfg.train.lora.dropout) == (64, 64, 0.1)
    assert cfg.train.lora.target_modules == "all-linear"
    assert cfg.train.stage1.learning_rate == 2e-5
    assert cfg.train.scheduler == "cosine" and cfg.train.precision == "bf16"
    assert cfg.train.early_stopping_patience > 0
    assert cfg.index.dense.model == "nlpai-lab/KURE-v1"


def _walk(model: type[BaseModel], prefix: str = ""):
    for name, info in model.model_fields.items():
        yield f"{prefix}{name}", info
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _walk(ann, f"{prefix}{name}.")


def test_every_field_documented() -> None:
    missing = [path for path, info in _walk(KrqaConfig) if not info.description]
    assert missing == []


def test_unknown_key_names_its_path(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("index:\n  bm25:\n    k2: 1.0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml: index\.bm25\.k2: unknown key"):
        load_config(cfg)


def test_wrong_type_and_range(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("retrieval:\n  top_k: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"retrieval\.top_k"):
        load_config(cfg)


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("index:\n  dir: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line \d+"):
        load_config(cfg)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent/krqa.yaml")


def test_overrides_keep_types(repo: Path) -> None:
    cfg = load_config(repo / "configs" / "tiny-test.yaml", ["retrieval.top_k=9", "train.qlora=true", "index.bm25.tags=[NNG, NNP]", "model.base=some/model"])
    assert cfg.retrieval.top_k == 9
    assert cfg.train.qlora is True
    assert cfg.index.bm25.tags == ["NNG", "NNP"]
    assert cfg.model.base == "some/model"


def test_override_unknown_key_rejected(repo: Path) -> None:
    with pytest.raises(ConfigError, match=r"retrieval\.nope: unknown key"):
        load_config(repo / "configs" / "tiny-test.yaml", ["retrieval.nope=1"])


def test_override_syntax() -> None:
    assert parse_override("a.b=1") == ("a.b", 1)
    assert parse_override("a=x=y") == ("a", "x=y")
    with pytest.raises(ConfigError):
        parse_override("no-equals")


def test_relative_paths_resolve_against_project(repo: Path) -> None:
    cfg = load_config(repo / "configs" / "cpu-demo.yaml")
    assert cfg.resolve_path("corpus/sample_qa.json") == repo / "corpus" / "sample_qa.json"
    assert cfg.resolve_path("/abs/x") == Path("/abs/x")


@pytest.mark.parametrize("value", ['"3"', "true", "3.0"])
def test_integers_are_strict(tmp_path: Path, value: str) -> None:
    path = tmp_path / "loose.yaml"
    path.write_text(f"retrieval:\n  top_k: {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"loose\.yaml: retrieval\.top_k: Input should be a valid integer"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"retrieval\.top_k"):
        load_config(None, [f"retrieval.top_k={value}"])

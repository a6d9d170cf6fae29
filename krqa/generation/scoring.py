"""Log-likelihood of answer texts continuing a prompt, for choosing a 선다형 option without parsing generated text.

A base or lightly tuned model often writes prose instead of an option number, and a parser then falls back to a
default; scoring each option's text by the model's log-likelihood always yields one of the item's options and uses
what the model knows even when it cannot follow the answer format. The prompt is the expensive part, so it runs
once: its KV cache is copied for each option, and all options of a batch of prompts are scored in one more forward
pass over the (short) option tokens. The cost is one prefill plus one small batch, about what a greedy 6-token
generation of the same prompt costs (``bench/bench_option_scoring.py``).

Memory: the prefill keeps the logits of the last prompt position only; the option pass needs the logits of every
option position (each predicts the next option token), so what grows with the number of options is each row's copy
of the prompt cache and its vocabulary-sized logits (Qwen's 151,936 entries are 1.2 MB a position in fp32, with
their log-softmax). Option rows therefore go through in passes held under a byte budget, not a row or token count:
the same budget means fewer rows a pass for a model with a long prompt cache or a large vocabulary.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from transformers.modeling_outputs import CausalLMOutputWithPast

# Default bytes of one option pass (rows' prompt-cache copies plus logits); ``generation.score_pass_mb``.
DEFAULT_PASS_BYTES = 256 * 2**20


def continuation_ids(tokenizer: Any, prompts: Sequence[str], prompt_ids: Sequence[Sequence[int]],
                     continuations: Sequence[Sequence[str]]) -> list[list[list[int]]]:
    """Token ids of each continuation as the model sees it after its prompt.

    Tokenizing ``prompt + continuation`` is the truth (that is what generation would have produced); when the
    prompt's own tokens are a prefix of it, the rest are the continuation's tokens. A merge across the boundary
    (rare: prompts end on a newline) falls back to tokenizing the continuation alone. One tokenizer call covers
    every pair.
    """
    joined_texts = [p + c for p, conts in zip(prompts, continuations, strict=True) for c in conts]
    joined = iter(tokenizer(joined_texts, add_special_tokens=True)["input_ids"]) if joined_texts else iter(())
    out: list[list[list[int]]] = []
    for ids, conts in zip(prompt_ids, continuations, strict=True):
        n = len(ids)
        row = []
        for text in conts:
            full = list(next(joined))
            if full[:n] == list(ids):
                row.append(full[n:])
            else:
                row.append(list(tokenizer(text, add_special_tokens=False)["input_ids"]))
        out.append(row)
    return out


def _cache_field() -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache`` (argument and output field)."""
    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def _left_pad(rows: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r):] = 1
    return ids, mask


def _cache_bytes(cache: Any) -> int:
    """Bytes of every tensor the cache's layers hold (keys, values and whatever state a layer type keeps)."""
    return sum(v.nbytes for layer in cache.layers for v in vars(layer).values() if isinstance(v, torch.Tensor))


def _rows_of(cache: Any, rows: Any) -> Any:
    """A cache of the prompt rows ``rows`` (a prompt repeated once per option), leaving ``cache`` as it was.

    Layers are copied shallowly and re-pointed at gathered tensors (a cache layer replaces its tensors when it
    reorders or grows, never writes into them), so the only new memory is the gathered rows; a deep copy would
    first duplicate every prompt of the batch.
    """
    out = copy.copy(cache)
    out.layers = [copy.copy(layer) for layer in cache.layers]
    out.reorder_cache(rows)
    return out


def _passes(widths: Sequence[int], row_bytes: int, token_bytes: int, budget: int) -> list[tuple[int, int]]:
    """``[start, end)`` runs of rows (sorted by width, ascending) whose pass fits ``budget``: each row costs its
    prompt-cache copy plus the logits of the pass's widest row; a row alone over the budget still gets a pass."""
    out: list[tuple[int, int]] = []
    start = 0
    while start < len(widths):
        end = start + 1
        while end < len(widths) and (end + 1 - start) * (row_bytes + widths[end] * token_bytes) <= budget:
            end += 1
        out.append((start, end))
        start = end
    return out


def score_continuations(model: Any, prompt_ids: list[list[int]], continuations: list[list[list[int]]], *,
                        pad_id: int, device: str = "cpu", batch_size: int = 8,
                        stop_ids: Sequence[int] = (), pass_bytes: int = DEFAULT_PASS_BYTES) -> list[list[tuple[float, int]]]:
    """``(sum log p, n_tokens)`` of every continuation of every prompt, in the given order.

    Prompts are batched (left-padded) and run once with a KV cache; each continuation row reuses its prompt's cache
    (copied, since a forward pass appends to it), so a prompt costs one prefill however many options it has.
    Positions are given explicitly so left padding never shifts them, as ``generate`` does. With ``stop_ids`` the
    probability that the answer ends right after the continuation (any of those tokens next) is included, so a
    span is not preferred over a longer one just for being its prefix (1989년 against 1989년 2월). ``pass_bytes``
    bounds what one option pass adds (see the module docstring).
    """
    if len(prompt_ids) != len(continuations):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(continuations)} continuation lists")
    field = _cache_field()
    out: list[list[tuple[float, int]]] = [[(0.0, 0)] * len(c) for c in continuations]
    order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        ids, mask = _left_pad([list(prompt_ids[i]) for i in idx], pad_id)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
        with torch.inference_mode():
            prefill = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(prefill.logits[:, -1, :].float(), dim=-1)
        cache = getattr(prefill, field)
        rows = [(b, j) for b, i in enumerate(idx) for j in range(len(continuations[i]))]
        for b, j in rows:
            toks = continuations[idx[b]][j]
            if toks:
                out[idx[b]][j] = (float(first[b, toks[0]]), len(toks))
        # With stop tokens every continuation needs its last token's prediction too (one more input position).
        extra = 1 if stop_ids else 0
        stops = torch.tensor(list(stop_ids), dtype=torch.long, device=device) if stop_ids else None
        # Shortest first, so that each pass pads its rows only to the longest of similar lengths (dozens of 단답형
        # candidate spans per prompt vary from one token to ten).
        longer = sorted(((b, j) for b, j in rows if len(continuations[idx[b]][j]) - 1 + extra > 0),
                        key=lambda bj: len(continuations[idx[bj[0]]][bj[1]]))
        prompt_lens = mask.sum(-1)
        widths = [len(continuations[idx[b]][j]) - 1 + extra for b, j in longer]
        # A position's logits in the model's dtype, then in fp32 and their log-softmax.
        token_bytes = prefill.logits.shape[-1] * (prefill.logits.element_size() + 8)
        plan = _passes(widths, _cache_bytes(cache) // len(idx), token_bytes, pass_bytes)
        for start_row, end in plan:
            group, width = longer[start_row:end], widths[end - 1]
            rows_b = torch.tensor([b for b, _ in group], dtype=torch.long, device=device)
            # The last continuation token is only a target, so the inputs are the continuation minus its last token
            # (all of it when the stop after it is scored).
            inputs = [continuations[idx[b]][j][: len(continuations[idx[b]][j]) - 1 + extra] for b, j in group]
            cont_ids = torch.full((len(group), width), pad_id, dtype=torch.long)
            cont_mask = torch.zeros((len(group), width), dtype=torch.long)
            for r, toks in enumerate(inputs):
                cont_ids[r, : len(toks)] = torch.tensor(toks, dtype=torch.long)
                cont_mask[r, : len(toks)] = 1
            cont_ids, cont_mask = cont_ids.to(device), cont_mask.to(device)
            group_cache = _rows_of(cache, rows_b)
            full_mask = torch.cat([mask[rows_b], cont_mask], dim=1)
            pos = prompt_lens[rows_b].unsqueeze(1) + torch.arange(width, device=device).unsqueeze(0)
            with torch.inference_mode():
                logits = model(input_ids=cont_ids, attention_mask=full_mask, position_ids=pos, use_cache=True, **{field: group_cache}).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            for r, (b, j) in enumerate(group):
                toks = continuations[idx[b]][j]
                targets = torch.tensor(toks[1:], dtype=torch.long, device=device)
                rest = logp[r, torch.arange(len(toks) - 1, device=device), targets].sum()
                if stops is not None:
                    rest = rest + torch.logsumexp(logp[r, len(toks) - 1, stops], dim=0)
                out[idx[b]][j] = (out[idx[b]][j][0] + float(rest), len(toks))
            # Freed before the next pass allocates its own, so passes never hold two sets at once.
            del logits, logp, group_cache
    return out

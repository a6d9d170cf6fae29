from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from krqa.training.loss import IGNORE, answer_loss, answer_positions


def _model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def _batch() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    ids = torch.randint(3, 300, (3, 12))
    labels = torch.full_like(ids, IGNORE)
    labels[0, 8:10] = ids[0, 8:10]
    labels[1, 3:7] = ids[1, 3:7]
    labels[2, 11] = ids[2, 11]
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_positions_cover_only_supervised_predictions() -> None:
    batch = _batch()
    assert answer_positions(batch["labels"]).tolist() == [2, 3, 4, 5, 7, 8, 10]


def test_equals_full_logits_loss() -> None:
    model, batch = _model(), _batch()
    with torch.no_grad():
        reference = model(**batch).loss
        ours, _ = answer_loss(model, batch)
    assert torch.allclose(ours, reference, atol=1e-6)


def test_num_items_normalises_across_accumulated_batches() -> None:
    model, batch = _model(), _batch()
    with torch.no_grad():
        mean, _ = answer_loss(model, batch)
        summed_over_14, _ = answer_loss(model, batch, num_items=torch.tensor(14))
    assert torch.allclose(summed_over_14, mean * 7 / 14, atol=1e-6)


def test_gradients_match_full_loss() -> None:
    model, batch = _model(), _batch()
    model(**batch).loss.backward()
    reference = model.model.layers[0].mlp.up_proj.weight.grad.clone()
    model.zero_grad()
    answer_loss(model, batch)[0].backward()
    assert torch.allclose(model.model.layers[0].mlp.up_proj.weight.grad, reference, atol=1e-6)

"""Answer-only loss that projects to the vocabulary only where an answer token is predicted.

Prompts (instructions, question, retrieved passages) are most of each example and are masked out of the
loss anyway, yet the stock causal-LM loss still computes their vocabulary logits. With Gemma's 262k-token
vocabulary that projection and its backward pass dominate a CPU step; asking the model for the logits of the
answer positions only (``logits_to_keep`` with an index tensor) gives the same loss several times faster.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer

IGNORE = -100


def answer_positions(labels: torch.Tensor) -> torch.Tensor:
    """Sequence positions whose logits predict a supervised token in any row of the batch."""
    return (labels[:, 1:] != IGNORE).any(dim=0).nonzero().squeeze(-1)


def answer_loss(model: Any, inputs: dict[str, torch.Tensor], num_items: torch.Tensor | int | None = None) -> tuple[torch.Tensor, Any]:
    """Summed token cross-entropy over answer positions, divided by ``num_items`` (default: this batch's count).

    ``num_items`` is the Trainer's count of supervised tokens over all gradient-accumulation micro-batches,
    so accumulated steps weight every token equally, as the stock loss does.
    """
    labels = inputs["labels"]
    keep = answer_positions(labels)
    model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    outputs = model(**model_inputs, logits_to_keep=keep)
    logits = outputs.logits.float()
    targets = labels[:, 1:][:, keep]
    total = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE, reduction="sum")
    if num_items is None:
        num_items = (targets != IGNORE).sum().clamp(min=1)
    if torch.is_tensor(num_items):
        num_items = num_items.to(total.device)
    return total / num_items, outputs


class AnswerLossTrainer(Trainer):
    """``Trainer`` whose loss is :func:`answer_loss`; everything else (resume, accumulation, DDP) is stock."""

    def compute_loss(self, model: Any, inputs: dict[str, torch.Tensor], return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
        loss, outputs = answer_loss(model, inputs, num_items_in_batch)
        self.loss_is_scaled_for_ga = num_items_in_batch is not None
        if num_items_in_batch is not None and self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

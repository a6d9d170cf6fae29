"""Optional per-epoch generation eval (``train.eval_generate``): answer dev questions and score them officially.

Dev loss says how well the model predicts the gold answer's tokens; it does not say whether greedy decoding
plus post-processing yields the right option number or an exact short answer. This callback answers the dev
questions through the same ``Answerer`` that ``predict`` and ``serve`` use (so the answers are the ones
``predict`` would give with this adapter) and scores them with ``krqa evaluate``'s metrics. BERTScore and
BLEURT are skipped here (their models are large), so the 서술형 part is ROUGE-1 only.
"""

from __future__ import annotations

import gc
import logging
import tempfile
from typing import Any

from transformers import TrainerCallback

from krqa.config import KrqaConfig
from krqa.qa.data import QAItem
from krqa.qa.scorer import score
from krqa.wiring import load_generator, make_answerer, open_index

log = logging.getLogger(__name__)


class GenerateEvalCallback(TrainerCallback):
    """After each evaluation: save the current adapter, answer ``items`` with it, score, keep the report."""

    def __init__(self, cfg: KrqaConfig, items: list[QAItem], contexts: dict[str, list[Any]] | None) -> None:
        self.cfg = cfg
        self.items = items
        self.rag = contexts is not None
        self.results: list[dict[str, Any]] = []

    def on_evaluate(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or model is None:
            return
        was_training = model.training
        with tempfile.TemporaryDirectory(prefix="krqa-answer-eval-") as tmp:
            model.save_pretrained(tmp)
            generator = load_generator(self.cfg, tmp, backend="transformers")
            retriever = open_index(self.cfg) if self.rag else None
            results = make_answerer(self.cfg, retriever, generator).answer_items(self.items, rag=self.rag)
            del generator, retriever
            gc.collect()
        model.train(was_training)
        preds = [item.to_json(r.answer) for item, r in zip(self.items, results)]
        report = score(preds, self.items, self.cfg.evaluate, model_metrics=False)
        summary = {k: v for k, v in report.items() if k not in ("items", "by_domain", "by_category")}
        self.results.append({"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "scores": summary})
        log.info("dev generation eval at epoch %.2f: %s", state.epoch or 0.0, {k: v for k, v in summary.items() if isinstance(v, (int, float))})

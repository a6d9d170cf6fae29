"""Time `score()` (accuracy + EM + ROUGE-1, no model metrics) on the full NIKL dev set, Mecab vs Kiwi.

Predictions are the gold answers perturbed so every code path does real work: a wrong option for every
third 선다형, one '#' alternative with its spaces changed for 단답형, and 서술형 answers with their second
half dropped and punctuation/hanja added. Cold times include building the tokenizer (Kiwi loads a model);
the first (cold) call and the median of the later (warm) calls are reported, with the ratio against
the first tokenizer measured in the same run.

    .venv/bin/python bench/bench_evaluate.py [--gold PATH] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from krqa.qa.config import EvaluateConfig
from krqa.qa.data import QAItem, load_items, split_alternatives
from krqa.qa.scorer import score
from krqa.qa.scorer.lexical import mecab_available

DEFAULT_GOLD = Path(__file__).resolve().parents[2] / "shared" / "data" / "nikl_culture_qa" / "korean_culture_qa_V1.0_dev+.json"


def perturb(items: list[QAItem]) -> list[dict[str, Any]]:
    preds = []
    for n, item in enumerate(items):
        gold = item.answer or ""
        if item.question_type == "선다형":
            answer = str(int(gold) % len(item.options) + 1) if n % 3 == 0 else gold
        elif item.question_type == "단답형":
            alts = split_alternatives(gold)
            answer = " ".join(alts[n % len(alts)])
        else:
            answer = gold[: len(gold) // 2] + " (韓國) — 끝!"
        preds.append(item.to_json(answer))
    return preds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gold", type=Path, default=DEFAULT_GOLD)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    gold = load_items(args.gold, require_answers=True)
    preds = perturb(gold)
    kinds = (["mecab"] if mecab_available() else []) + ["kiwi"]
    rows = []
    for kind in kinds:
        cfg = EvaluateConfig(rouge_tokenizer=kind, model_metrics=False)
        times, report = [], {}
        for _ in range(args.runs + 1):
            start = time.perf_counter()
            report = score(preds, gold, cfg)
            times.append(time.perf_counter() - start)
        rows.append((kind, times[0], statistics.median(times[1:]), report))
    base = rows[0][2]
    print(f"evaluate (accuracy + EM + ROUGE-1) on {args.gold.name}: {len(gold)} items; "
          f"cold = first call in the process (tokenizer load), warm = median of {args.runs} more")
    print(f"{'tokenizer':<38} {'cold s':>7} {'warm s':>7} {'warm vs first':>13} {'MC acc':>7} {'EM':>7} {'ROUGE-1':>8}")
    for kind, cold, warm, report in rows:
        bt = report["by_type"]
        print(f"{report['rouge_tokenizer']:<38} {cold:>7.3f} {warm:>7.3f} {warm / base:>12.2f}x "
              f"{bt['선다형']['accuracy']:>7.4f} {bt['단답형']['exact_match']:>7.4f} {bt['서술형']['rouge1']:>8.4f}")
    worst = max(r[1] for r in rows)
    print(f"goal < 2 s (cold, worst tokenizer): {'met' if worst < 2 else 'NOT met'} ({worst:.3f} s)")

if __name__ == "__main__":
    main()

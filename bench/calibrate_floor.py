"""Calibrate ``retrieval.min_score`` on NIKL **train** (never dev) from retrieval alone.

    python bench/calibrate_floor.py --index /path/to/kowiki-index [--config configs/kowiki-cpu.yaml] [--k 3]

Each train question is ranked as predict ranks it; its passages are "useful" when the top-k holds the answer
(단답형: a ``#`` alternative; 선다형: the gold option's text; 서술형 has no such test and is left out). The floor
is the top-1 score t that best separates useful from useless passage sets (Youden's J = P(score ≥ t | useful) −
P(score ≥ t | useless)); below it a question gets no passages. Printed: the table of candidate floors and the
chosen one, per type and pooled, with answer-hit@k per type as `rag_types` evidence.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT.parent / "shared" / "data" / "nikl_culture_qa" / "korean_culture_qa_V1.0_train+.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--config", default=str(ROOT / "configs" / "kowiki-cpu.yaml"))
    ap.add_argument("--qa", type=Path, default=TRAIN)
    ap.add_argument("--k", type=int, default=3)
    args = ap.parse_args()

    from krqa.config import load_config
    from krqa.index.answer_hits import item_values, rank_items
    from krqa.qa.data import DESC, load_items
    from krqa.qa.scorer.lexical import make_tokenizer
    from krqa.wiring import open_index

    cfg = load_config(args.config)
    retriever = open_index(cfg, args.index)
    items = [it for it in load_items(args.qa, require_answers=True) if it.question_type != DESC]
    rankings = rank_items(retriever, items, cfg.retrieval.query, args.k, cfg.retrieval.mode)
    values = item_values(items, rankings, [args.k], make_tokenizer(cfg.evaluate.rouge_tokenizer))
    top1 = np.array([r[0].score if r else 0.0 for r in rankings])
    useful = np.array([v[f"value@{args.k}"] >= 1.0 for v in values])
    types = np.array([it.question_type for it in items])

    def best_floor(mask: np.ndarray) -> tuple[float, float]:
        scores, good = top1[mask], useful[mask]
        if good.all() or not good.any():
            return 0.0, 0.0
        cands = np.unique(scores)
        j = [(good & (scores >= t)).sum() / good.sum() - ((~good) & (scores >= t)).sum() / (~good).sum() for t in cands]
        i = int(np.argmax(j))
        return float(cands[i]), float(j[i])

    print(f"{args.qa.name}: {len(items)} questions (선다형 + 단답형), mode {cfg.retrieval.mode}, top-{args.k}\n")
    print("| questions | n | answer-hit@%d | median top-1 score (useful / useless) | floor (max J) | J | kept above floor | hit@%d above / below |" % (args.k, args.k))
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    for name, mask in [(t, types == t) for t in sorted(set(types))] + [("pooled", np.ones(len(items), bool))]:
        floor, j = best_floor(mask)
        above = mask & (top1 >= floor)
        below = mask & (top1 < floor)
        med_u = np.median(top1[mask & useful]) if (mask & useful).any() else float("nan")
        med_n = np.median(top1[mask & ~useful]) if (mask & ~useful).any() else float("nan")
        print(f"| {name} | {mask.sum()} | {useful[mask].mean():.3f} | {med_u:.1f} / {med_n:.1f} | {floor:.2f} | {j:.3f} | "
              f"{above.sum() / mask.sum():.2f} | {useful[above].mean() if above.any() else 0:.3f} / {useful[below].mean() if below.any() else 0:.3f} |")


if __name__ == "__main__":
    main()

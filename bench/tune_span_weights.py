"""Fit the span scorer's weights (``generation.sa_lm_weight``, ``sa_pmi_weight``, ``sa_statement_weight``,
``sa_statement_mean_weight``, ``sa_feature_weights``) on the train articles of the KorQuAD reading set, and show
what each part is worth by cross-validation.

The untrained model's likelihood of a candidate span after the 단답형 prompt (the cloze) alone picks the gold span for
about one 단답형 question in ten; its likelihood of the question turned into a statement with the candidate in the
gap, right after the passage, for about one in three (the model copies how the passage went on); what needs no model
(closeness to the question's words, the sentence sharing most of them, the particle after the span, the answer
type) for about one in three; weighed together they do better than any. The weights are those of a conditional
logit (softmax over one question's candidates, the gold spans as the target, L2) over the model's scores and
``krqa.generation.spans.FEATURES``; the no-passage share (pmi weight) is chosen from a grid by the same
cross-validation. Held-out articles are never read here: the table in README comes from ``krqa ablate``.

Two steps, the first cached (a killed run continues from the cache; a cache without statement scores gets them):
1. score: the train articles' 단답형 items, top passage by BM25, candidates pruned to ``--cap`` by the current
   weights, each candidate's log-likelihood with and without the passage and its statement's (the Answerer's own
   prompts);
2. fit: features by the library code, 5-fold CV by question, then a fit on all; prints a table and the YAML to
   paste into ``krqa/generation/config.py`` (SPAN_FEATURE_WEIGHTS) or a config file.

    .venv/bin/python bench/tune_span_weights.py [--work outputs/quality] [--items 100] [--cap 48]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
KORQUAD = REPO.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev_part_a.json"
PMI_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def _krqa(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "krqa", *args], check=True, cwd=REPO)


def score(work: Path, cache: Path, n_items: int, cap: int, config: Path) -> list[dict]:
    """Candidates and their two log-likelihoods for ``n_items`` train-article 단답형 items (cached per item)."""
    from krqa import wiring
    from krqa.config import load_config
    from krqa.generation import spans
    from krqa.generation.answerer import gate
    from krqa.qa.data import SHORT, load_items

    index = work / "index-korquad-bm25"
    sets = [f"index.dir={index}", "index.dense.backend=none", "retrieval.mode=bm25"]
    if not (work / "reading" / "train.json").is_file():
        _krqa("data", "reading-set", str(KORQUAD), "--out", str(work / "reading"))
    if not (index / "manifest.json").is_file():
        _krqa("build-index", "-c", str(config), "--corpus", str(KORQUAD), "--out", str(index), *[a for s in sets[1:] for a in ("--set", s)])
    cfg = load_config(config, sets)
    records = json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else []
    done = {r["id"] for r in records}
    items = [i for i in load_items(work / "reading" / "train.json") if i.question_type == SHORT]
    random.Random(7).shuffle(items)
    todo = [i for i in items[:n_items] if i.id not in done]
    unstated = [r for r in records if r["candidates"] and "st" not in r["candidates"][0]]
    if not todo and not unstated:
        return records
    retriever = wiring.open_index(cfg)
    answerer = wiring.make_answerer(cfg, retriever, wiring.load_generator(cfg, ""))
    from tqdm import tqdm

    for record in tqdm(unstated, desc="statement scores of cached items", file=sys.stderr):
        _add_statement_scores(answerer.generator, record)
    if unstated:
        _save(cache, records)
    weights = cfg.generation.sa_feature_weights
    for item, hits in tqdm(list(zip(todo, retriever.search_items(todo, top_k=1), strict=True)), desc="score", file=sys.stderr):
        ctx, _ = gate(hits, cfg.retrieval.min_score)
        record = {"id": item.id, "question": item.stem, "answers": item.alternatives, "passages": [], "candidates": []}
        if ctx:
            prompt = answerer.builder.build_prompt(item, ctx[:1])
            passages = answerer.builder.passage_texts(ctx[:1], prompt)
            kept, _ = spans.item_candidates(passages, item.stem, cap, weights)
            texts = [c.text for c in kept]
            with_p, without = answerer.generator.score_options([prompt.text, answerer.builder.build_prompt(item, []).text], [texts, texts], stop=True)
            record["passages"] = passages
            record["candidates"] = [{"text": c.text, "passage": c.passage, "start": c.start, "tags": list(c.tags), "occurrences": c.occurrences,
                                     "lp": a.logprob, "ref": b.logprob, "n_tokens": a.n_tokens, "n_chars": a.n_chars}
                                    for c, a, b in zip(kept, with_p, without, strict=True)]
            _add_statement_scores(answerer.generator, record)
        records.append(record)
        _save(cache, records)
    return records


def _add_statement_scores(generator, record: dict) -> None:
    """Each candidate's statement log-likelihood and its token count (the Answerer's statement pass)."""
    from krqa.generation import spans

    prefix, rest = spans.statement_parts(record["question"])
    conts = [spans.statement_continuation(c["text"], prefix, rest) for c in record["candidates"]]
    for c, s in zip(record["candidates"], generator.score_options([spans.statement_prompt(record["passages"], prefix)], [conts])[0], strict=True):
        c["st"], c["st_n"] = s.logprob, s.n_tokens


def _save(cache: Path, records: list[dict]) -> None:
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, cache)


def design(records: list[dict]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per question: (features, cloze lp, its no-passage lp, statement lp and lp per token, gold mask)."""
    from krqa.generation import spans

    out = []
    for r in records:
        golds = {re.sub(r"\s+", "", a) for a in r["answers"]}
        cands = [spans.Candidate(c["text"], c["passage"], c["start"], tuple(c["tags"]), occurrences=[tuple(o) for o in c["occurrences"]])
                 for c in r["candidates"]]
        if not cands:
            continue
        feats = spans.candidate_features(cands, r["passages"], r["question"])
        x = np.array([[f[name] for name in spans.FEATURES] for f in feats])
        gold = np.array([re.sub(r"\s+", "", c.text) in golds for c in cands])
        st = np.array([[c["st"], c["st"] / max(c["st_n"], 1)] for c in r["candidates"]])
        out.append((x, np.array([c["lp"] for c in r["candidates"]]), np.array([c["ref"] for c in r["candidates"]]), st, gold))
    return out


def _nll(w: np.ndarray, xs: list[np.ndarray], ys: list[np.ndarray], l2: float) -> tuple[float, np.ndarray]:
    total, grad = 0.0, np.zeros_like(w)
    for x, y in zip(xs, ys, strict=True):
        s = x @ w
        m = s.max()
        p = np.exp(s - m)
        z = p.sum()
        p /= z
        sg = s[y]
        lg = sg.max() + math.log(np.exp(sg - sg.max()).sum())
        total += m + math.log(z) - lg
        pg = np.zeros_like(p)
        pg[y] = np.exp(s[y] - lg)
        grad += x.T @ (p - pg)
    return total + l2 * float(w @ w), grad + 2 * l2 * w


def fit(xs: list[np.ndarray], ys: list[np.ndarray], l2: float) -> np.ndarray:
    """Conditional-logit weights (on the original scale of each column)."""
    from scipy.optimize import minimize

    stacked = np.concatenate(xs)
    mu, sd = stacked.mean(0), stacked.std(0) + 1e-9
    res = minimize(_nll, np.zeros(stacked.shape[1]), args=([(x - mu) / sd for x in xs], ys, l2), jac=True, method="L-BFGS-B")
    return res.x / sd


PARTS = ("lm", "statement", "features", "features+statement", "all")


def columns(data: list, part: str, pmi: float) -> list[np.ndarray]:
    """The columns a scorer weighs: the cloze score (lm), the statement scores, the features, or all
    (in that order: lm, statement sum, statement mean, features)."""
    out = []
    for x, lp, ref, st, _ in data:
        lm = (lp - pmi * ref)[:, None]
        out.append({"lm": lm, "statement": st, "features": x, "features+statement": np.hstack([st, x]), "all": np.hstack([lm, st, x])}[part])
    return out


def cv(data: list, part: str, pmi: float, l2: float, folds: int) -> int:
    """Questions whose top-scored candidate is gold, each scored by weights fitted on the other folds."""
    xs, ys = columns(data, part, pmi), [d[-1] for d in data]
    hits = 0
    for f in range(folds):
        train = [i for i in range(len(xs)) if i % folds != f]
        w = fit([xs[i] for i in train], [ys[i] for i in train], l2)
        hits += sum(bool(ys[i][int(np.argmax(xs[i] @ w))]) for i in range(len(xs)) if i % folds == f)
    return hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "quality")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "cpu-demo.yaml")
    parser.add_argument("--items", type=int, default=100, help="Train-article 단답형 items scored.")
    parser.add_argument("--cap", type=int, default=48, help="Candidates scored per item (pruned by the current weights).")
    parser.add_argument("--scorer", choices=("features+statement", "all"), default="features+statement",
                        help="The weights printed: without the cloze pass (sa_lm_weight 0: one model pass a question, within the cost "
                             "budget) or with it (a second pass; what a trained adapter answers best).")
    parser.add_argument("--l2", type=float, default=1.0)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    if not KORQUAD.is_file():
        raise SystemExit(f"KorQuAD not found at {KORQUAD}")
    from krqa.generation.spans import FEATURES

    args.work.mkdir(parents=True, exist_ok=True)
    records = score(args.work, args.work / "span-tuning.json", args.items, args.cap, args.config)
    data = [d for d in design(records) if d[-1].any()]
    n = len(records)
    print(f"{n} train-article 단답형 items; gold among the {args.cap} scored candidates: {len(data)} ({len(data) / max(n, 1):.3f})\n")
    print("| scorer | pmi weight | CV top-1 (of items with gold among candidates) | of all items |")
    print("|---|--:|--:|--:|")
    best = (-1, 0.0)
    for part in PARTS:
        for pmi in PMI_GRID if part in ("lm", "all") else (0.0,):
            hits = cv(data, part, pmi, args.l2, args.folds)
            print(f"| {part} | {pmi if part in ('lm', 'all') else '-'} | {hits / len(data):.3f} | {hits / max(n, 1):.3f} |")
            if part == "all" and hits > best[0]:
                best = (hits, pmi)
    # Without the cloze pass its pmi share and weight are moot: 0.
    pmi = best[1] if args.scorer == "all" else 0.0
    w = fit(columns(data, args.scorer, pmi), [d[-1] for d in data], args.l2)
    if args.scorer != "all":
        w = np.concatenate([[0.0], w])
    print(f"\n{args.scorer}:")
    # The model's parts must not count against a candidate (config: ge=0); a negative fit means "no use".
    lm, st_sum, st_mean = (max(round(float(v), 4), 0.0) for v in w[:3])
    print(f"\nsa_normalization: pmi\nsa_pmi_weight: {pmi}\nsa_lm_weight: {lm}\nsa_statement_weight: {st_sum}\n"
          f"sa_statement_mean_weight: {st_mean}\nsa_feature_weights:")
    for name, value in zip(FEATURES, w[3:], strict=True):
        print(f"  {name}: {round(float(value), 4)}")


if __name__ == "__main__":
    main()

"""Cost of answering 단답형 by span extraction against a greedy 16-token generation of the same prompts.

The issue's budget: per item at most 3x a greedy generation of 16 new tokens of the same prompt. All cases run on
the same 단답형 prompts (KorQuAD reading items with their paragraph as the passage, as the extractor
sees the top passage: the question's own paragraph), the same model and batch size; generation is forced to 16 new tokens (``min_new_tokens``)
so it never stops early. Timed, each through the Answerer's own code: greedy generation; ``extract`` (Kiwi
candidates, pruning to ``generation.sa_max_candidates``, the statement pass and, with ``sa_lm_weight`` > 0 (what a
LoRA adapter turns on through ``sa_adapter_lm_weight``), the cloze pass; one prefill per prompt shared by its
candidates); ``hybrid`` (the generation, then extraction with the generated answer among the candidates). Median
of ``--runs`` interleaved runs; ratios are from the same run.

    .venv/bin/python bench/bench_span_scoring.py [--config configs/cpu-demo.yaml] [--items 8] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
READING = REPO.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev_part_a.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "cpu-demo.yaml")
    parser.add_argument("--items", type=int, default=8, help="단답형 items per run.")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--set", dest="sets", action="append", default=[], help="Config overrides (section.field=value), e.g. generation.sa_max_candidates=32.")
    args = parser.parse_args()
    if not READING.is_file():
        raise SystemExit(f"KorQuAD not found at {READING}")

    import torch

    from krqa.config import load_config
    from krqa.generation.base import DEFAULT_DECODING
    from krqa.generation.factory import make_generator
    from krqa.qa.data import SHORT
    from krqa.qa.reading import make_items, read_squad
    from krqa.wiring import make_answerer

    cfg = load_config(args.config, [f"generation.batch_size={args.batch_size}", "generation.max_new_tokens.단답형=16", *args.sets])
    generator = make_generator(cfg.model, cfg.generation.model_copy(update={"backend": "transformers"}), adapter="")
    answerer = make_answerer(cfg, None, generator)
    questions = read_squad(READING)[: args.items]
    items = [i for _, i in make_items(questions, seed=0, types=(SHORT,))]
    contexts = [[{"title": q.article, "text": q.context}] for q in questions]
    prompts = [answerer.builder.build_prompt(i, c) for i, c in zip(items, contexts)]
    n_tokens = [p.n_tokens for p in prompts]

    def generate() -> list:
        forced = generator.min_new_tokens
        generator.min_new_tokens = lambda qtype, decoding=DEFAULT_DECODING: 16  # type: ignore[method-assign]
        try:
            return answerer._generate(items, contexts, DEFAULT_DECODING, [None] * len(items))
        finally:
            generator.min_new_tokens = forced  # type: ignore[method-assign]

    def extract() -> None:
        answerer._extract(items, contexts, DEFAULT_DECODING, None)

    def hybrid() -> None:
        answerer._extract(items, contexts, DEFAULT_DECODING, generate())

    cases = {"greedy generation, 16 new tokens": generate, "extract (candidates, features, model passes)": extract, "hybrid (generation + extract)": hybrid}
    for fn in cases.values():
        fn()  # warm-up (Kiwi's model, the tokenizer's caches)
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.runs):
        for name, fn in cases.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    base = statistics.median(times["greedy generation, 16 new tokens"])
    g = cfg.generation
    print(f"## bench_span_scoring: {cfg.model.base}, {torch.get_num_threads()} torch threads on {os.cpu_count()} cores, batch {args.batch_size}")
    print(f"{len(items)} 단답형 prompts with one passage (median {statistics.median(n_tokens):.0f} tokens), up to {g.sa_max_candidates} candidates, "
          f"statement pass {'on' if g.sa_statement_weight or g.sa_statement_mean_weight else 'off'}, cloze pass weight {g.sa_lm_weight}; "
          f"median of {args.runs} runs\n")
    print("| method | median s | ms / question | vs generation |")
    print("| --- | ---: | ---: | ---: |")
    for name in cases:
        med = statistics.median(times[name])
        print(f"| {name} | {med:.2f} | {med / len(items) * 1000:.0f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()

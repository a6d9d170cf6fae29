"""Cost of answering 선다형 by option scoring against a greedy 6-token generation of the same prompts.

The issue's budget: scoring 4–5 options must cost at most 1.5x a greedy generation of 6 new tokens of the same
prompt. Both run on the same prompts (KorQuAD 선다형 items with passages, so the prompt dominates as in real use),
the same model and batch size; generation is forced to 6 new tokens (``min_new_tokens``) so it never stops early.
Timed: ``Generator.score_options`` on the prompts (one prefill per prompt, its KV cache shared by the options);
the default 'pmi' scoring, which also scores the options after the same question without passages (a shorter
second prompt); ``Generator.generate_timed``; and scoring with a full forward pass per option (no shared cache),
which is what the cache saves. Median of ``--runs`` interleaved runs; ratios are from the same run.

    .venv/bin/python bench/bench_option_scoring.py [--config configs/cpu-demo.yaml] [--items 16] [--runs 3]
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
    parser.add_argument("--items", type=int, default=16, help="선다형 items per run.")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--passages", type=int, default=1, help="Passages (paragraphs of the same article) per prompt; 선다형 scoring uses one.")
    args = parser.parse_args()

    import torch

    from krqa.config import load_config
    from krqa.qa.data import MC
    from krqa.qa.prompts import PromptBuilder
    from krqa.qa.reading import make_items, read_squad
    from krqa.wiring import load_generator

    cfg = load_config(args.config, [f"generation.batch_size={args.batch_size}", "generation.max_new_tokens.선다형=6"])
    generator = load_generator(cfg, "", backend="transformers")
    builder = PromptBuilder(cfg.prompt, generator.tokenizer, mc_target="cloze")
    if READING.is_file():
        import json

        paragraphs: dict[str, list[str]] = {}
        for art in json.loads(READING.read_text(encoding="utf-8"))["data"]:
            paragraphs[art["title"]] = [p["context"] for p in art["paragraphs"]]
        pairs = [(a, i) for a, i in make_items(read_squad(READING), seed=0, types=(MC,))][: args.items]
        items = [i for _, i in pairs]
        contexts = [[{"title": a, "text": t} for t in paragraphs[a][: args.passages]] for a, _ in pairs]
    else:
        from krqa.qa.data import load_items

        items = [i for i in load_items(REPO / "corpus" / "sample_qa.json") if i.question_type == MC][: args.items]
        contexts = [[{"title": i.topic_keyword, "text": i.question * 8}] * args.passages for i in items]
    prompts = [builder.build_prompt(i, c).text for i, c in zip(items, contexts)]
    bare = [builder.build_prompt(i, []).text for i in items]
    options = [list(i.options) for i in items]
    n_tokens = [len(generator.tokenizer(p)["input_ids"]) for p in prompts]
    generator.gen_cfg = cfg.generation.model_copy(update={"desc_min_new_tokens": 0})
    six = [MC] * len(prompts)

    def generate() -> None:
        with_min = generator.min_new_tokens
        generator.min_new_tokens = lambda qtype: 6  # type: ignore[method-assign]
        try:
            generator.generate_timed(prompts, six)
        finally:
            generator.min_new_tokens = with_min  # type: ignore[method-assign]

    def score() -> None:
        generator.score_options(prompts, options)

    def score_pmi() -> None:
        generator.score_options(prompts + bare, options + options)

    def per_option() -> None:
        # One prompt + option sequence per row, no shared cache: what scoring costs without the prefix reuse.
        flat_prompts = [p + o for p, opts in zip(prompts, options) for o in opts]
        generator.score_options(flat_prompts, [[""] for _ in flat_prompts])

    cases = {"greedy generation, 6 new tokens": generate, "option scoring, shared prompt cache": score,
             "option scoring + no-passage reference (pmi, the default)": score_pmi, "option scoring, one pass per option": per_option}
    for fn in cases.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.runs):
        for name, fn in cases.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    base = statistics.median(times["greedy generation, 6 new tokens"])
    print(f"## bench_option_scoring: {cfg.model.base}, {torch.get_num_threads()} torch threads on {os.cpu_count()} cores, batch {args.batch_size}")
    print(f"{len(prompts)} 선다형 prompts with {args.passages} passages (median {statistics.median(n_tokens):.0f} tokens), "
          f"{statistics.mean(len(o) for o in options):.1f} options each; median of {args.runs} runs\n")
    print("| method | median s | ms / question | vs generation |")
    print("| --- | ---: | ---: | ---: |")
    for name in cases:
        med = statistics.median(times[name])
        print(f"| {name} | {med:.2f} | {med / len(prompts) * 1000:.0f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()

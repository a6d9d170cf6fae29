"""Prediction throughput (questions/min) of the transformers backend on CPU: batched vs one question at a time.

Uses the tiny random model of configs/tiny-test.yaml (2 layers, hidden 64) on the NIKL dev questions (the bundled
sample questions when ../shared/data is absent), without RAG, with that config's per-type token limits. The
random model rarely emits EOS, so every answer runs to its limit: a worst case for batching, whose rows would
otherwise finish at different lengths. Prompts are built once; only ``Generator.generate_timed`` is timed. Each
batch size is run ``--runs`` times, interleaved, and the median is reported with the ratio against batch 1
measured in the same run. Post-processing is not timed (it is ~0.1 ms/question).

    .venv/bin/python bench/bench_predict.py [--input PATH] [--limit 48] [--runs 3] [--batch-sizes 1 8 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = REPO.parent / "shared" / "data" / "nikl_culture_qa" / "korean_culture_qa_V1.0_dev+.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT if DEFAULT_INPUT.is_file() else REPO / "corpus" / "sample_qa.json")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "tiny-test.yaml")
    parser.add_argument("--limit", type=int, default=48, help="Questions per run (the first N of --input).")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16])
    args = parser.parse_args()

    import torch

    from krqa.config import load_config
    from krqa.qa.data import load_items
    from krqa.qa.prompts import PromptBuilder
    from krqa.wiring import load_generator

    cfg = load_config(args.config)
    items = load_items(args.input)[: args.limit]
    generator = load_generator(cfg, "", backend="transformers")
    builder = PromptBuilder(cfg.prompt, generator.tokenizer)
    prompts = [builder.build(i) for i in items]
    types = [i.question_type for i in items]
    generator.generate(prompts[:2], types[:2])  # warm-up (first-call allocations)

    times: dict[int, list[float]] = {b: [] for b in args.batch_sizes}
    tokens: dict[int, int] = {}
    for _ in range(args.runs):
        for b in args.batch_sizes:
            generator.gen_cfg = cfg.generation.model_copy(update={"batch_size": b})
            started = time.perf_counter()
            out = generator.generate_timed(prompts, types)
            times[b].append(time.perf_counter() - started)
            tokens[b] = sum(g.new_tokens for g in out)

    by_type = {t: types.count(t) for t in dict.fromkeys(types)}
    limits = cfg.generation.max_new_tokens
    print(f"## bench_predict: {cfg.model.base} on CPU ({torch.get_num_threads()} torch threads, {os.cpu_count()} cores), transformers backend, no RAG")
    print(f"{len(items)} questions from {args.input.name} ({', '.join(f'{t} {n}' for t, n in by_type.items())}); "
          f"max_new_tokens 선다형 {limits.선다형} / 단답형 {limits.단답형} / 서술형 {limits.서술형}; median of {args.runs} runs\n")
    print("| batch size | median s | questions/min | new tokens/s | vs batch 1 |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    base = statistics.median(times[args.batch_sizes[0]])
    for b in args.batch_sizes:
        med = statistics.median(times[b])
        print(f"| {b} | {med:.2f} | {len(items) / med * 60:.0f} | {tokens[b] / med:.0f} | {base / med:.1f}x |")


if __name__ == "__main__":
    main()

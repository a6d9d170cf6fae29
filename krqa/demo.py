"""``krqa demo``: the whole recipe on the embedded defaults, one step at a time.

Each step reuses what an earlier run built (the index when its manifest matches, the converted demo LM,
the stage-2 adapter), so a second ``krqa demo`` only starts the service and asks the questions again.

The steps that load models (index, model, train, compare) each run in a process of their own, started fresh and
ended with the step: the demo's memory is then the largest single step's, not the sum of every model one long
process has touched (a single process peaked at 5.3 GB with the service running beside it; see README).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from krqa.config import KrqaConfig
from krqa.errors import InputError, KrqaError
from krqa.lifetime import die_with_parent
from krqa.log import setup_logging
from krqa.model_location import resolve_lm
from krqa.qa.data import DESC, MC, QUESTION_TYPES, SHORT, QAItem, load_items
from krqa.sysmem import return_freed_memory

log = logging.getLogger(__name__)

STEPS = ("index", "model", "train", "compare", "serve")
QUESTIONS_PER_TYPE = 2
# The compare step's questions per type (drawn with a fixed seed): 12 of the 32 bundled ones. The table shows what
# retrieval adds, and its intervals are wide at any size this set allows; all 32 took 200 s of a 7:42 first run.
# Three of each took as long as four (117 s): the 서술형 batch's 160-token decoding is the step's cost, not its size.
COMPARE_PER_TYPE = 4
DESC_MIN_CHARS = 40


@dataclass
class DemoReport:
    """What each step did and where its output went; printed at the end and with ``--json``."""

    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    answers: list[dict[str, Any]] = field(default_factory=list)
    comparison: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"steps": self.steps, "answers": self.answers, "comparison": self.comparison}


def _timed(report: DemoReport, step: str, info: dict[str, Any], started: float) -> None:
    info["seconds"] = round(time.perf_counter() - started, 1)
    report.steps[step] = info


def step_index(cfg: KrqaConfig, report: DemoReport, force: bool) -> None:
    from krqa.index.build import build_index  # start-up time: each demo step imports what it runs
    from krqa.wiring import open_index  # start-up time: each demo step imports what it runs

    started = time.perf_counter()
    index_dir = cfg.index.dir
    if not force:
        try:
            retriever = open_index(cfg)
            _timed(report, "index", {"status": "reused", "dir": index_dir, "chunks": retriever.manifest.chunk_count}, started)
            return
        except InputError as err:
            log.info("building the index (%s)", err)
    manifest = build_index(cfg.corpus, cfg.index)
    _timed(report, "index", {"status": "built", "dir": index_dir, "chunks": manifest.chunk_count}, started)


def step_model(cfg: KrqaConfig, report: DemoReport) -> None:
    started = time.perf_counter()
    path = resolve_lm(cfg.model.base, cfg.model.cache_dir)
    _timed(report, "model", {"status": "ready", "base": cfg.model.base, "path": str(path)}, started)


def _adapter_dir(cfg: KrqaConfig) -> Path:
    return Path(cfg.train.output_dir) / "stage2" / "adapter"


def _loss_summary(run_dir: Path) -> dict[str, Any]:
    """Per-stage losses read back from the run's metrics.json, so a reused run reports them too."""
    from krqa.training.stage import stage_summary  # start-up time: each demo step imports only what it runs

    path = run_dir / "metrics.json"
    if not path.is_file():
        return {}
    metrics = json.loads(path.read_text(encoding="utf-8"))
    return {stage: stage_summary(rec) for stage, rec in metrics.items() if isinstance(rec, dict) and rec.get("train_loss")}


def step_train(cfg: KrqaConfig, report: DemoReport, force: bool, config_path: str | None) -> None:
    from krqa.training.trainer import train  # start-up time: each demo step imports what it runs

    started = time.perf_counter()
    adapter = _adapter_dir(cfg)
    run_dir = Path(cfg.train.output_dir)
    status = "reused"
    if force or not (adapter / "adapter_config.json").is_file():
        train(cfg, rag=True, stage="all", resume=False, config_path=config_path)
        status = "trained"
    info = {"status": status, "run_dir": str(run_dir), "adapter": str(adapter), "loss_curve": str(run_dir / "loss_curve.png"), **_loss_summary(run_dir)}
    _timed(report, "train", info, started)


def step_compare(cfg: KrqaConfig, report: DemoReport) -> None:
    """No-RAG against RAG on ``COMPARE_PER_TYPE`` bundled questions of each type, with the trained adapter, scored
    officially (ROUGE-1 only for 서술형) with bootstrap intervals: what retrieval adds, through ``krqa ablate``'s
    code path. Predictions are kept by fingerprint under the run directory, so a second demo reuses them."""
    from krqa.ablation import Variant, ablate  # start-up time: each demo step imports what it runs

    started = time.perf_counter()
    adapter = _adapter_dir(cfg)
    use = str(adapter) if (adapter / "adapter_config.json").is_file() else None
    # One greedy 서술형 answer per question here: sampling candidates one prompt at a time would double the step's
    # time, and both rows are compared under the same settings (the serve step keeps the configured candidates).
    one = {"generation.desc_candidates": 1}
    rows = [Variant("no-RAG", rag=False, adapter=use, sets=one), Variant("RAG", rag=True, adapter=use, sets=one)]
    out = Path(cfg.train.output_dir) / "compare"
    report.comparison = ablate(cfg, Path(cfg.train.train_file), rows, out, baseline="no-RAG", per_type=COMPARE_PER_TYPE, n_boot=1000)
    _timed(report, "compare", {"status": "scored", "dir": str(out), "adapter": use}, started)


def demo_questions(cfg: KrqaConfig) -> list[QAItem]:
    """A few questions of each type from the bundled sample set, always the same ones."""
    items = load_items(Path(cfg.train.train_file))
    picked: list[QAItem] = []
    for qtype in QUESTION_TYPES:
        picked += [i for i in items if i.question_type == qtype][:QUESTIONS_PER_TYPE]
    return picked


def check_answer(item: QAItem, answer: str) -> str | None:
    """The demo's promise: a valid answer for the question's type; returns the problem, if any."""
    text = answer.strip()
    if item.question_type == MC:
        return None if text.isdigit() and 1 <= int(text) <= len(item.options) else f"not an option number 1..{len(item.options)}"
    if not text:
        return "empty answer"
    if item.question_type == SHORT and len(text) > 60:
        return "short answer longer than 60 characters"
    if item.question_type == DESC and ("\n" in text or len(text) < DESC_MIN_CHARS):
        return f"descriptive answer is not one paragraph of at least {DESC_MIN_CHARS} characters"
    return None


def _request_deadline(cfg: KrqaConfig, items: list[QAItem]) -> float:
    """Every request waits for the whole batch, so each gets the time all of them had one after another (a slow or
    busy machine must not turn the demo into 504s)."""
    return cfg.serve.request_timeout_s * len(items)


@contextmanager
def serving(cfg: KrqaConfig, serve_args: list[str], items: list[QAItem]) -> Iterator[str]:
    """``krqa serve`` with the trained adapter as its own process, its URL once ready; stopped on exit."""
    from krqa.serving.server import free_port, spawned  # start-up time: each demo step imports what it runs

    args = [*serve_args, "--set", f"serve.request_timeout_s={_request_deadline(cfg, items)}"]
    adapter = _adapter_dir(cfg)
    if (adapter / "adapter_config.json").is_file():
        args += ["--adapter", str(adapter)]
    port = cfg.serve.port or free_port(cfg.serve.host)
    with spawned(args, cfg.serve.host, port) as base:
        yield base


def ask_service(cfg: KrqaConfig, report: DemoReport, base: str, items: list[QAItem], started: float) -> None:
    """Every demo question at once, each its own ``POST /answer`` as separate clients would send them: the service
    merges concurrent requests into one batch (micro-batching), so the two 서술형 answers are generated together."""
    import httpx  # start-up time: each demo step imports what it runs

    deadline = _request_deadline(cfg, items)
    problems = []
    headers = {"Authorization": f"Bearer {os.environ[cfg.serve.api_key_env]}"} if os.environ.get(cfg.serve.api_key_env) else {}
    with httpx.Client(base_url=base, headers=headers, timeout=deadline + 30) as client:

        def ask(item: QAItem) -> dict[str, Any]:
            body = {"question": item.question, "question_type": item.question_type, "topic_keyword": item.topic_keyword,
                    "category": item.category, "domain": item.domain, "return_contexts": True}
            resp = client.post("/answer", json=body)
            if resp.status_code != 200:
                raise KrqaError(f"POST /answer for {item.id} returned {resp.status_code}: {resp.text[:200]}")
            return resp.json()

        with ThreadPoolExecutor(max_workers=len(items)) as pool:
            replies = list(pool.map(ask, items))
    for item, data in zip(items, replies, strict=True):
        problem = check_answer(item, data["answer"])
        if problem:
            problems.append(f"{item.id}: {problem}")
        if not data.get("contexts"):
            problems.append(f"{item.id}: no contexts returned")
        report.answers.append({"id": item.id, "question_type": item.question_type, "question": item.stem, "options": item.options,
                               "answer": data["answer"], "gold": item.answer, "contexts": data.get("contexts", [])[:2],
                               "timings_ms": data.get("timings_ms", {})})
    _timed(report, "serve", {"status": "answered" if not problems else "invalid answers", "url": base, "questions": len(report.answers), "problems": problems}, started)
    if problems:
        raise KrqaError("demo answers failed the type checks: " + "; ".join(problems))


def _run_step(cfg: KrqaConfig, step: str, force: bool, config_path: str | None) -> DemoReport:
    report = DemoReport()
    if step == "index":
        step_index(cfg, report, force)
    elif step == "model":
        step_model(cfg, report)
    elif step == "train":
        step_train(cfg, report, force, config_path)
    elif step == "compare":
        step_compare(cfg, report)
    return report


def _child_init(log_level: int, parent_pid: int) -> None:
    """A spawned step process starts with no logging and glibc's default allocator settings: set both as the CLI
    does; and it ends with the demo, even a killed one (which skips the pool's shutdown)."""
    die_with_parent(parent_pid)
    setup_logging(verbose=log_level <= logging.DEBUG, quiet=log_level > logging.INFO)
    return_freed_memory()


def _steps_pool(n: int) -> ProcessPoolExecutor:
    """Fresh spawned processes for steps (not forked: the parent holds no model, and a fork of a process with torch
    threads is unsafe); a step's report, or its exception, comes back through the pool."""
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(max_workers=n, mp_context=context, initializer=_child_init, initargs=(logging.getLogger().level, os.getpid()))


def _merge(report: DemoReport, done: DemoReport) -> None:
    report.steps.update(done.steps)
    report.comparison = done.comparison or report.comparison


def _serve_step(cfg: KrqaConfig, report: DemoReport, serve_args: list[str], before_asking: Callable[[], None] = lambda: None) -> None:
    """Start the service, run ``before_asking`` while it loads (the compare step's wait), then ask the questions."""
    items = demo_questions(cfg)
    started = time.perf_counter()
    with serving(cfg, serve_args, items) as base:
        before_asking()
        ask_service(cfg, report, base, items, started)


def run_demo(cfg: KrqaConfig, steps: list[str], force: bool = False, config_path: str | None = None, serve_args: list[str] | None = None) -> DemoReport:
    """The steps in order, with two overlaps that change no answer: index and model share nothing, so they run side
    by side (one is mostly Kiwi and the encoder, the other the single-threaded GGUF conversion); the service starts
    (imports, model and index load: ~20 s) while compare answers, and is asked once compare is done. Answering in
    both at once was tried and is much slower: two processes of two torch threads on two cores made the service's
    answers time out (README, "What `krqa demo` does")."""
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise InputError(f"unknown demo step {unknown[0]!r} (expected one of {', '.join(STEPS)})")
    report = DemoReport()
    side_by_side = {"index", "model"} <= set(steps)
    if side_by_side:
        log.info("demo steps: index and model, side by side")
        with _steps_pool(2) as pool:
            for future in [pool.submit(_run_step, cfg, step, force, config_path) for step in ("index", "model")]:
                _merge(report, future.result())
    for step in steps:
        if (side_by_side and step in ("index", "model")) or (step == "serve" and "compare" in steps):
            continue
        log.info("demo step: %s", step)
        if step == "serve":
            _serve_step(cfg, report, serve_args or [])
            continue
        with _steps_pool(1) as pool:
            future = pool.submit(_run_step, cfg, step, force, config_path)
            if step == "compare" and "serve" in steps:
                log.info("demo step: serve (the service starts while compare answers)")
                _serve_step(cfg, report, serve_args or [], lambda: _merge(report, future.result()))
            else:
                _merge(report, future.result())
    return report

"""The demo's first run: wall time per step and peak memory of the whole process tree, on this machine.

Runs ``krqa demo --json`` with a fresh index, run directory and model cache (``model.cache_dir`` under --work, so
the Gemma conversion is part of the run and the user's cache is untouched), samples the resident memory of the demo
and every process it starts (step processes, the service) every 0.2 s, and prints one table. The tree's sum is
the figure that matters on a small machine; ``/usr/bin/time -v`` reports only the largest single process.

    .venv/bin/python bench/bench_demo.py [--work outputs/bench-demo] [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
STEPS = ("index", "model", "train", "compare", "serve")


def tree_rss(root: psutil.Process) -> tuple[int, int]:
    """(sum, largest) resident bytes over ``root`` and its descendants."""
    sizes = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            sizes.append(proc.memory_info().rss)
        except psutil.Error:
            continue
    return sum(sizes), max(sizes, default=0)


def one_run(work: Path) -> dict:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    cmd = [str(REPO / ".venv" / "bin" / "krqa"), "demo", "--json", "--set", f"index.dir={work / 'index'}",
           "--set", f"train.output_dir={work / 'run'}", "--set", f"model.cache_dir={work / 'models'}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with (work / "stderr.log").open("w", encoding="utf-8") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True)
        peak = {"sum": 0, "largest": 0, "at_s": 0.0}

        def sample() -> None:
            root = psutil.Process(proc.pid)
            while proc.poll() is None:
                try:
                    total, largest = tree_rss(root)
                except psutil.Error:
                    break
                if total > peak["sum"]:
                    peak.update(sum=total, at_s=time.perf_counter() - started)
                peak["largest"] = max(peak["largest"], largest)
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out, _ = proc.communicate()
        sampler.join()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"krqa demo failed ({proc.returncode}); see {work / 'stderr.log'}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = json.loads(out)
    seconds = {s: report["steps"][s]["seconds"] for s in STEPS}
    # The demo runs index and model side by side and starts the service while compare answers, so the peak is
    # placed in one of three phases, not one step.
    phases = [("index / model", max(seconds["index"], seconds["model"])), ("train", seconds["train"]), ("compare / serve", float("inf"))]
    elapsed, step_at = 0.0, "compare / serve"
    for name, length in phases:
        elapsed += length
        if peak["at_s"] <= elapsed:
            step_at = name
            break
    return {"wall": wall, "user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime, "steps": seconds,
            "peak_sum": peak["sum"], "peak_largest": peak["largest"], "peak_step": step_at}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "bench-demo")
    parser.add_argument("--runs", type=int, default=1, help="First runs to take the median of (each ~9 min on 2 cores).")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    runs = [one_run(args.work / f"run{i}") for i in range(args.runs)]

    def median(values: list[float]) -> float:
        values = sorted(values)
        mid = len(values) // 2
        return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2

    gib = 2**30
    print(f"krqa demo, first run (fresh index, run directory and model cache); median of {len(runs)}; {os.cpu_count()} CPUs")
    print("(index and model run side by side, serve starts while compare answers: step times overlap)\n")
    print("| measure | value |")
    print("|---|--:|")
    for s in STEPS:
        print(f"| step {s} (s) | {median([r['steps'][s] for r in runs]):.1f} |")
    wall = median([r["wall"] for r in runs])
    print(f"| wall | {int(wall // 60)}:{wall % 60:04.1f} |")
    print(f"| CPU user / system (s) | {median([r['user'] for r in runs]):.0f} / {median([r['sys'] for r in runs]):.0f} |")
    print(f"| peak RSS, whole process tree (GiB) | {median([r['peak_sum'] for r in runs]) / gib:.2f} (in {runs[0]['peak_step']}) |")
    print(f"| peak RSS, largest single process (GiB) | {median([r['peak_largest'] for r in runs]) / gib:.2f} |")


if __name__ == "__main__":
    main()

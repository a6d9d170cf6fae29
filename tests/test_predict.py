"""``krqa predict`` end to end with the tiny random model: submission shape, side files, resume, RAG, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from krqa.config import KrqaConfig
from krqa.errors import InputError
from krqa.generation.predict import side_paths
from krqa.index.types import SearchParams
from krqa.wiring import run_predict
from krqa.qa.data import load_items

FAST = ["generation.max_new_tokens.선다형=2", "generation.max_new_tokens.단답형=4", "generation.max_new_tokens.서술형=6", "generation.batch_size=8"]


@pytest.fixture(scope="module")
def sets(tiny_cfg: KrqaConfig) -> list[str]:
    """``--set`` flags for the CLI runs: the session's model cache (the tiny model is built once) and FAST."""
    return [f"model.cache_dir={tiny_cfg.model.cache_dir}", *FAST]


def _cfg(tiny_config, *extra: str) -> KrqaConfig:
    return tiny_config(*FAST, *extra)


def _rag(cfg: KrqaConfig, on: bool) -> KrqaConfig:
    """The config with ``predict.rag`` set, as ``--rag/--no-rag`` sets it."""
    return cfg.model_copy(update={"predict": cfg.predict.model_copy(update={"rag": on})})


def _check_submission(out: Path, src: Path, n: int | None = None) -> list[dict]:
    preds = json.loads(out.read_text(encoding="utf-8"))
    gold = json.loads(src.read_text(encoding="utf-8"))[:n]
    assert [p["id"] for p in preds] == [g["id"] for g in gold]
    items = {i.id: i for i in load_items(src)}
    for p, g in zip(preds, gold):
        assert p["input"] == g["input"] and isinstance(p["output"]["answer"], str)
        item = items[p["id"]]
        if item.question_type == "선다형":
            assert p["output"]["answer"].isdigit() and 1 <= int(p["output"]["answer"]) <= len(item.options)
    return preds


@pytest.mark.slow
def test_cli_on_nikl_dev(repo: Path, nikl_dir: Path, sets: list[str], tmp_path: Path) -> None:
    dev = nikl_dir / "korean_culture_qa_V1.0_dev+.json"
    out = tmp_path / "preds.json"
    cmd = [sys.executable, "-m", "krqa", "predict", "--config", str(repo / "configs" / "tiny-test.yaml"), "--input", str(dev),
           "--output", str(out), "--no-rag", "--json"] + [a for s in sets for a in ("--set", s)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)  # stdout is only the JSON report; progress and logs went to stderr
    n = len(json.loads(dev.read_text(encoding="utf-8")))
    assert report["items"] == report["input_items"] == n and report["complete"] and report["answered_now"] == n
    assert report["by_type"] == {"선다형": 49, "단답형": 26, "서술형": 23}
    _check_submission(out, dev)
    details, progress = side_paths(out)
    rows = [json.loads(line) for line in details.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == [p["id"] for p in json.loads(out.read_text(encoding="utf-8"))]
    assert all(r["contexts"] == [] and r["prompt_tokens"] > 0 and "generate" in r["timings_ms"] and isinstance(r["raw"], str) for r in rows)
    assert len(progress.read_text(encoding="utf-8").splitlines()) == n + 1  # header + one line per item


def test_resume_after_interruption(tiny_config, repo: Path, sets: list[str], tmp_path: Path) -> None:
    src = repo / "corpus" / "sample_qa.json"
    out = tmp_path / "preds.json"
    cfg = _cfg(tiny_config)
    first = run_predict(_rag(cfg, False), src, out, limit=10)
    assert first["items"] == 10 and not first["complete"] and first["answered_now"] == 10
    partial = _check_submission(out, src, 10)

    full = run_predict(_rag(cfg, False), src, out)
    total = len(load_items(src))
    assert full["resumed"] == 10 and full["answered_now"] == total - 10 and full["complete"]
    preds = _check_submission(out, src)
    assert preds[:10] == partial  # resumed answers are kept, not regenerated
    _, progress = side_paths(out)
    assert len(progress.read_text(encoding="utf-8").splitlines()) == total + 1

    again = run_predict(_rag(cfg, False), src, out)
    assert again["answered_now"] == 0 and again["resumed"] == total
    fresh = run_predict(_rag(cfg, False), src, out, resume=False, limit=3)
    assert fresh["resumed"] == 0 and fresh["answered_now"] == 3


def test_killed_mid_write_and_mismatched_progress(tiny_config, repo: Path, sets: list[str], tmp_path: Path) -> None:
    src = repo / "corpus" / "sample_qa.json"
    out = tmp_path / "preds.json"
    cfg = _cfg(tiny_config)
    run_predict(_rag(cfg, False), src, out, limit=8)
    _, progress = side_paths(out)
    with open(progress, "a", encoding="utf-8") as fh:
        fh.write('{"id": "s009", "answ')  # a record cut off by a kill
    report = run_predict(_rag(cfg, False), src, out, limit=12)
    assert report["resumed"] == 8 and report["answered_now"] == 4
    lines = progress.read_text(encoding="utf-8").splitlines()
    # answered grouped by type (not in input order), each item exactly once
    assert len(lines) == 13 and sorted(json.loads(line)["id"] for line in lines[1:]) == [f"s{i:03d}" for i in range(1, 13)]

    changed = _cfg(tiny_config, "prompt.system=다른 시스템 프롬프트")
    with pytest.raises(InputError, match="progress belongs to another input or other settings"):
        run_predict(_rag(changed, False), src, out)
    other_input = tmp_path / "other.json"
    other_input.write_text(json.dumps(json.loads(src.read_text(encoding="utf-8"))[:5], ensure_ascii=False), encoding="utf-8")
    with pytest.raises(InputError, match="--no-resume"):
        run_predict(_rag(cfg, False), other_input, out)
    # batch size only changes speed, so the progress still applies
    faster = _cfg(tiny_config, "generation.batch_size=2")
    assert run_predict(_rag(faster, False), src, out, limit=12)["answered_now"] == 0


def test_bad_inputs_write_nothing(tiny_config, repo: Path, sets: list[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": "x1", "input": {"category": "c", "domain": "d", "question_type": "객관식", "topic_keyword": "t", "question": "q"}}]', encoding="utf-8")
    out = tmp_path / "out" / "preds.json"
    cmd = [sys.executable, "-m", "krqa", "predict", "--config", str(repo / "configs" / "tiny-test.yaml"), "--input", str(bad), "--output", str(out), "--no-rag"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "item 'x1': input.question_type" in proc.stderr
    assert not out.parent.exists()
    cfg = _cfg(tiny_config)
    with pytest.raises(InputError, match="--limit 0"):
        run_predict(_rag(cfg, False), repo / "corpus" / "sample_qa.json", out, limit=0)
    with pytest.raises(InputError, match="same file as --input"):
        run_predict(_rag(cfg, False), bad, bad)
    with pytest.raises(InputError, match="--adapter .*directory not found"):
        run_predict(_rag(cfg, False), repo / "corpus" / "sample_qa.json", out, adapter=str(tmp_path / "nope"))


def test_output_that_is_a_directory_fails_before_any_generation(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    out.mkdir()
    cmd = [sys.executable, "-m", "krqa", "predict", "--config", str(repo / "configs" / "tiny-test.yaml"), "--input",
           str(repo / "corpus" / "sample_qa.json"), "--output", str(out), "--no-rag"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"krqa: error: {out}: is a directory; --output names the file to write (e.g. {out / 'submission.json'})"]
    assert list(out.iterdir()) == []


def test_output_below_a_file_is_a_one_line_error(repo: Path, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep", encoding="utf-8")
    cmd = [sys.executable, "-m", "krqa", "predict", "--config", str(repo / "configs" / "tiny-test.yaml"), "--input",
           str(repo / "corpus" / "sample_qa.json"), "--output", str(afile / "out.json"), "--no-rag"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"krqa: error: {afile / 'out.json'}: {afile} is not a directory, so --output cannot be created under it"]
    assert afile.read_text(encoding="utf-8") == "keep"


def test_rag_needs_an_index(tiny_config, repo: Path, sets: list[str], tmp_path: Path) -> None:
    cfg = _cfg(tiny_config, f"index.dir={tmp_path / 'no-index'}")
    with pytest.raises(InputError, match=r"--rag needs an index: .*krqa build-index"):
        run_predict(_rag(cfg, True), repo / "corpus" / "sample_qa.json", tmp_path / "p.json")
    assert not (tmp_path / "p.json").exists() and not side_paths(tmp_path / "p.json")[1].exists()


@pytest.mark.slow
def test_rag_on_the_sample_corpus(tiny_config, repo: Path, sets: list[str], tiny_bm25_index: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_config, "index.dense.backend=none", "retrieval.mode=bm25", f"index.dir={tiny_bm25_index}")
    src = repo / "corpus" / "sample_qa.json"
    out = tmp_path / "preds.json"
    report = run_predict(_rag(cfg, True), src, out, search=SearchParams(top_k=2), limit=12)
    assert report["rag"] and report["items"] == 12
    _check_submission(out, src, 12)
    rows = [json.loads(line) for line in side_paths(out)[0].read_text(encoding="utf-8").splitlines()]
    assert all(1 <= len(r["contexts"]) <= 2 and r["contexts_retrieved"] == 2 for r in rows)
    first = rows[0]["contexts"][0]
    assert first["rank"] == 1 and first["title"] and first["doc_id"] and isinstance(first["score"], float) and first["text"]
    no_rag = run_predict(_rag(cfg, False), src, tmp_path / "plain.json", limit=12)
    assert report["mean_prompt_tokens"] > no_rag["mean_prompt_tokens"]
    with pytest.raises(InputError, match="progress belongs to another"):  # --top-k changes answers: a new run
        run_predict(_rag(cfg, True), src, out, search=SearchParams(top_k=3), limit=12)

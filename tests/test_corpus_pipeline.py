"""build_chunks and `krqa build-corpus` on the bundled samples and on bad input (strict mode, atomic output)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from krqa.config import load_config
from krqa.corpus.config import SourceConfig
from krqa.corpus.pipeline import REPORT_FILE, build_chunks, iter_documents
from krqa.corpus.store import load_chunks
from krqa.errors import InputError

REMNANTS = ("[[", "{{", "'''", "||", "<ref", "[*", "]]", "}}", "<!--", "{|")


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("store") / "chunks"
    cfg = load_config(None, ["corpus.chunking.kiwi_workers=1"])
    return out, build_chunks(cfg.corpus, out)


def test_samples_build_clean_chunks(sample_store):
    out, report = sample_store
    ds = load_chunks(out)
    assert len(ds) == report.chunks > 200
    by_source = {s.name: s for s in report.sources}
    assert by_source["kowiki"].docs >= 40 and by_source["namuwiki"].docs >= 40
    assert report.skipped == {}
    assert dict(by_source["kowiki"].left_out) == {"redirect": 1, "disambiguation": 1, "namespace": 1}
    for row in ds:
        for field in ("text", "index_text", "title", "section"):
            assert not any(r in row[field] for r in REMNANTS), (row["title"], row[field])
    assert json.loads((out / REPORT_FILE).read_text(encoding="utf-8"))["chunks"] == report.chunks


def test_sample_questions_are_answerable_from_the_corpus(sample_store, repo: Path):
    """Every gold answer of the bundled short-answer and multiple-choice questions occurs in a chunk of
    the matching topic, so the demo's knowledge really is in the corpus."""
    out, _ = sample_store
    texts = "\n".join(load_chunks(out)["text"])
    items = json.loads((repo / "corpus" / "sample_qa.json").read_text(encoding="utf-8"))
    missing = []
    for item in items:
        question, answer = item["input"]["question"], item.get("output", {}).get("answer", "")
        qtype = item["input"]["question_type"]
        if qtype == "단답형":
            if not any(alt.strip() in texts for alt in answer.split("#")):
                missing.append(item["id"])
        elif qtype == "선다형":
            options = dict(part.split("\\t", 1) for part in question.split("\\n", 1)[1].split() if "\\t" in part) if "\\t" in question else {}
            option = options.get(answer)
            if option and option not in texts:
                missing.append(item["id"])
        if item["input"]["topic_keyword"] not in texts:
            missing.append(item["id"])
    assert missing == []


def test_source_limit_and_iter_documents(repo: Path):
    skips = []
    docs = list(iter_documents(SourceConfig(path=str(repo / "corpus/sample_namuwiki.json"), limit=5), on_skip=skips.append))
    assert len(docs) == 5 and all(d.source == "namuwiki" for d in docs)


def _bad_namuwiki(tmp_path: Path) -> Path:
    items = [{"namespace": "0", "title": f"문서{i}", "text": f"문서{i}는 한국 문화에 관한 충분히 긴 설명 문장을 담고 있는 예시 문서입니다. 둘째 문장도 있습니다.", "contributors": []} for i in range(3)]
    data = json.dumps(items, ensure_ascii=False).encode("utf-8")
    path = tmp_path / "cut.json"
    path.write_bytes(data[: len(data) - 40])
    return path


def test_bad_input_is_reported_and_strict_fails_without_output(tmp_path: Path):
    cfg = load_config(None, ["corpus.chunking.kiwi_workers=1"])
    src = [SourceConfig(path=str(_bad_namuwiki(tmp_path)))]
    report = build_chunks(cfg.corpus, tmp_path / "ok", sources=src)
    assert report.docs == 2 and report.skipped == {"truncated": 1}
    assert report.sources[0].skips[0]["position"].startswith("item 3 at file byte ")
    out = tmp_path / "strict"
    with pytest.raises(InputError, match=r"cut.json: truncated at item 3 at file byte \d+: .*\(strict mode\)"):
        build_chunks(cfg.corpus, out, sources=src, strict=True)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".strict")]


def test_missing_source_is_input_error(tmp_path: Path):
    cfg = load_config(None, [])
    with pytest.raises(InputError, match="nope.xml: corpus source not found"):
        build_chunks(cfg.corpus, tmp_path / "o", sources=[SourceConfig(path=str(tmp_path / "nope.xml"))])


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "krqa", "-q", "build-corpus", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cli_json_and_strict_exit_code(tmp_path: Path, repo: Path):
    bad = _bad_namuwiki(tmp_path)
    done = _cli("--corpus", str(bad), "--out", str(tmp_path / "o"), "--json", "--set", "corpus.chunking.kiwi_workers=1", cwd=repo)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["docs"] == 2 and report["skipped"] == {"truncated": 1} and report["sources"][0]["format"] == "namuwiki"
    failed = _cli("--corpus", str(bad), "--out", str(tmp_path / "s"), "--strict", cwd=repo)
    assert failed.returncode == 2
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("krqa: error: ") and "truncated" in lines[0]
    assert not (tmp_path / "s").exists()

"""Output directories: krqa refuses to replace what it did not make, swaps indexes atomically, resumes only its
own build, and writes files other users can read (0644 files, 0755 directories under umask 022)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from krqa.corpus.pipeline import build_chunks
from krqa.errors import InputError
from krqa.fsutil import atomic_write_json, exchange, replace_dir
from krqa.index.build import build_index
from tests.test_index_build import DOCS, small_config, write_corpus


def _bm25(tiny_config, out: Path, *sets: str):
    return small_config(tiny_config, out, "index.dense.backend=none", "retrieval.mode=bm25", *sets)


def _foreign(path: Path) -> Path:
    (path / "sub").mkdir(parents=True)
    (path / "notes.txt").write_text("keep", encoding="utf-8")
    (path / "sub" / "data.bin").write_bytes(b"\x00keep")
    return path


def _intact(path: Path) -> bool:
    return (path / "notes.txt").read_text(encoding="utf-8") == "keep" and (path / "sub" / "data.bin").read_bytes() == b"\x00keep"


@pytest.fixture()
def umask022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_build_index_refuses_a_foreign_directory_and_its_siblings(tiny_config, repo: Path, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    out = _foreign(tmp_path / "x")
    with pytest.raises(InputError, match=r"x: not empty and not a krqa index \(no manifest.json\)"):
        build_index((c := _bm25(tiny_config, out)).corpus, c.index, out_dir=out, corpus_paths=[corpus])
    assert _intact(out)

    out = tmp_path / "idx"
    partial = _foreign(tmp_path / "idx.partial")
    with pytest.raises(InputError, match="idx.partial: exists but is not an unfinished krqa build"):
        build_index((c := _bm25(tiny_config, out)).corpus, c.index, out_dir=out, corpus_paths=[corpus])
    assert _intact(partial) and not out.exists()
    shutil.rmtree(partial)

    old = _foreign(tmp_path / "idx.old")
    build_index((c := _bm25(tiny_config, out)).corpus, c.index, out_dir=out, corpus_paths=[corpus])
    first = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["created_at"]
    assert first
    # Rebuilding over an index replaces it; a sibling <out>.old that krqa did not make is never touched,
    # and nothing is left beside the index.
    write_corpus(corpus, DOCS[:5])
    m = build_index((c := _bm25(tiny_config, out)).corpus, c.index, out_dir=out, corpus_paths=[corpus])
    assert m.sources[0].docs == 5 and _intact(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl", "idx", "idx.old", "x"]


def test_build_index_cli_never_takes_the_checkout(repo: Path, tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / ".git").mkdir(parents=True)
    (checkout / ".git" / "HEAD").write_text("ref: refs/heads/main\n", encoding="utf-8")
    (checkout / "README.md").write_text("project\n", encoding="utf-8")
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    for out in (".", "..", str(checkout)):
        res = subprocess.run([sys.executable, "-m", "krqa", "build-index", "-c", str(repo / "configs" / "tiny-test.yaml"),
                              "--set", "index.dense.backend=none", "--corpus", str(corpus), "--out", out],
                             cwd=checkout, capture_output=True, text=True, timeout=300)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "current directory or one of its parents" in lines[0], res.stderr
    assert (checkout / ".git" / "HEAD").is_file() and (checkout / "README.md").is_file()
    assert sorted(p.name for p in checkout.iterdir()) == [".git", "README.md"]


def test_build_corpus_refuses_a_foreign_directory(tiny_config, repo: Path, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    cfg = _bm25(tiny_config, tmp_path / "idx")
    out = _foreign(tmp_path / "chunks")
    from krqa.corpus.config import SourceConfig

    sources = [SourceConfig(path=str(corpus))]
    with pytest.raises(InputError, match=r"chunks: not empty and not a krqa chunk store \(no corpus_report.json\)"):
        build_chunks(cfg.corpus, out, sources=sources)
    assert _intact(out)
    store = tmp_path / "store"
    assert build_chunks(cfg.corpus, store, sources=sources).chunks > 0
    assert build_chunks(cfg.corpus, store, sources=sources).chunks > 0  # a chunk store may be replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunks", "corpus.jsonl", "store"]


def test_resume_refuses_a_finished_partial_of_another_corpus(tiny_config, repo: Path, tmp_path: Path) -> None:
    other = write_corpus(tmp_path / "other.jsonl", DOCS[:3])
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    out = tmp_path / "idx"
    build_index((c := _bm25(tiny_config, tmp_path / "made")).corpus, c.index, out_dir=tmp_path / "made", corpus_paths=[other])
    os.replace(tmp_path / "made", tmp_path / "idx.partial")  # a finished build of another corpus
    with pytest.raises(InputError, match="idx.partial: the finished build there was made from another corpus or config"):
        build_index((c := _bm25(tiny_config, out)).corpus, c.index, out_dir=out, corpus_paths=[corpus], resume=True)
    assert not out.exists()
    m = build_index((c := _bm25(tiny_config, out)).corpus, c.index, out_dir=out, corpus_paths=[corpus])  # without --resume: rebuilt
    assert m.sources[0].docs == len(DOCS) and not (tmp_path / "idx.partial").exists()


def _modes(root: Path) -> set[tuple[str, int]]:
    found = {("dir", stat.S_IMODE(root.stat().st_mode))}
    for path in root.rglob("*"):
        found.add(("dir" if path.is_dir() else "file", stat.S_IMODE(path.stat().st_mode)))
    return found


def test_outputs_are_readable_by_other_users(tiny_config, repo: Path, tmp_path: Path, umask022: None) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    out = tmp_path / "idx"
    build_index((c := _bm25(tiny_config, out)).corpus, c.index, out_dir=out, corpus_paths=[corpus])
    assert _modes(out) == {("dir", 0o755), ("file", 0o644)}
    atomic_write_json(tmp_path / "pred.json", [])
    assert stat.S_IMODE((tmp_path / "pred.json").stat().st_mode) == 0o644


def test_replace_dir_swaps_whole_directories(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "which").write_text("a")
    (b / "which").write_text("b")
    if not exchange(a, b):
        pytest.skip("this filesystem has no atomic exchange (the two-rename fallback is used)")
    assert (a / "which").read_text() == "b" and (b / "which").read_text() == "a"
    replace_dir(a, b)
    assert (b / "which").read_text() == "b" and not a.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_build_index_strict_keeps_the_previous_index_and_a_bad_byte_costs_one_document(repo: Path, tmp_path: Path) -> None:
    items = [{"namespace": "0", "title": f"문서{i}", "text": f"문서{i}는 한국 문화에 관한 충분히 긴 설명 문장을 담은 예시 문서입니다. 둘째 문장도 있습니다.",
              "contributors": []} for i in range(1, 21)]
    data = json.dumps(items, ensure_ascii=False).encode("utf-8")
    dump = tmp_path / "namu.json"
    dump.write_bytes(data)
    out = tmp_path / "idx"
    args = [sys.executable, "-m", "krqa", "-q", "build-index", "-c", str(repo / "configs" / "tiny-test.yaml"), "--set",
            "index.dense.backend=none", "--set", "corpus.chunking.near_dup_threshold=1", "--corpus", str(dump), "--out", str(out), "--json"]
    first = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""  # -q: no bm25s debug line ("Building index from IDs objects")
    assert json.loads(first.stdout)["sources"][0]["docs"] == 20
    before = (out / "manifest.json").read_bytes()

    at = data.index("문서1".encode())
    dump.write_bytes(data[:at] + b"\xff" + data[at + 1:])  # a bad byte in the first item
    strict = subprocess.run([*args, "--strict"], capture_output=True, text=True, timeout=300)
    assert strict.returncode == 2 and strict.stdout == ""
    assert strict.stderr.strip().splitlines()[-1].startswith("krqa: error: ") and "invalid_utf8 at item 1 at file byte" in strict.stderr
    assert (out / "manifest.json").read_bytes() == before

    lenient = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert lenient.returncode == 0, lenient.stderr
    assert json.loads(lenient.stdout)["sources"][0]["docs"] == 19  # every later document is kept


def test_a_file_named_like_krqa_s_marker_does_not_make_a_directory_krqa_s(tiny_config, tmp_path: Path) -> None:
    """Before: any directory holding a file named manifest.json (build-corpus: corpus_report.json), and any
    <out>.partial holding manifest.json or build_state.json, was replaced or deleted with everything in it."""
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    app = _foreign(tmp_path / "app")
    (app / "manifest.json").write_text('{"name": "my web app"}', encoding="utf-8")
    with pytest.raises(InputError, match=r"app: not empty and not a krqa index \(its manifest.json is not a krqa index manifest\)"):
        build_index((c := _bm25(tiny_config, app)).corpus, c.index, out_dir=app, corpus_paths=[corpus])
    assert _intact(app)

    for marker in ("manifest.json", "build_state.json"):
        partial = _foreign(tmp_path / f"{marker}-idx.partial")
        (partial / marker).write_text('{"name": "my web app"}', encoding="utf-8")
        out = tmp_path / f"{marker}-idx"
        with pytest.raises(InputError, match=r"idx.partial: exists but is not an unfinished krqa build"):
            build_index((c := _bm25(tiny_config, out)).corpus, c.index, out_dir=out, corpus_paths=[corpus])
        assert _intact(partial) and not out.exists()

    store = _foreign(tmp_path / "store")
    (store / "corpus_report.json").write_text("{}", encoding="utf-8")
    from krqa.corpus.config import SourceConfig

    with pytest.raises(InputError, match=r"store: not empty and not a krqa chunk store \(its corpus_report.json is not a krqa corpus report\)"):
        build_chunks(_bm25(tiny_config, tmp_path / "i").corpus, store, sources=[SourceConfig(path=str(corpus))])
    assert _intact(store)


def test_a_real_index_holding_a_file_krqa_did_not_write_is_not_replaced(tiny_config, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    out = tmp_path / "idx"
    build_index((c := _bm25(tiny_config, out)).corpus, c.index, out_dir=out, corpus_paths=[corpus])
    (out / "notes.txt").write_text("keep", encoding="utf-8")
    with pytest.raises(InputError, match=r"idx: not empty and not a krqa index \(notes.txt is not listed in its manifest.json\)"):
        build_index((c := _bm25(tiny_config, out)).corpus, c.index, out_dir=out, corpus_paths=[corpus])
    assert (out / "notes.txt").read_text(encoding="utf-8") == "keep"


def test_build_corpus_never_writes_into_an_index(tiny_config, repo: Path, tmp_path: Path) -> None:
    """Before: build-corpus without --out wrote <index.dir>/chunks, and the index then refused to load."""
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    index = tmp_path / "idx"
    build_index((c := _bm25(tiny_config, index)).corpus, c.index, out_dir=index, corpus_paths=[corpus])
    before = (index / "chunks" / "chunks.arrow").read_bytes()
    base = [sys.executable, "-m", "krqa", "-q", "build-corpus", "-c", str(repo / "configs" / "tiny-test.yaml"), "--set",
            f"index.dir={index}", "--corpus", str(tmp_path / "small.jsonl")]
    write_corpus(tmp_path / "small.jsonl", DOCS[:3])
    for extra in ([], ["--out", str(index / "chunks")], ["--out", str(index / "other")]):
        res = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=300)
        if not extra:
            assert res.returncode == 0, res.stderr
            assert (tmp_path / "idx-chunks" / "chunks.arrow").is_file()
            continue
        assert res.returncode == 2, res.stderr
        assert res.stderr.strip().splitlines() == [
            f"krqa: error: --out {extra[1]}: inside the krqa index {index}; build-corpus never writes into an index "
            "(its manifest would no longer match), choose a directory outside it"]
    assert (index / "chunks" / "chunks.arrow").read_bytes() == before
    from krqa.index.manifest import check_files, read_manifest

    check_files(index, read_manifest(index))  # still loads


def test_build_index_out_root_is_a_one_line_error(repo: Path, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    res = subprocess.run([sys.executable, "-m", "krqa", "build-index", "-c", str(repo / "configs" / "tiny-test.yaml"),
                          "--set", "index.dense.backend=none", "--corpus", str(corpus), "--out", "/"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == ["krqa: error: /: is the filesystem root; choose a new directory for the index"]


def test_resume_refuses_a_partial_of_a_dump_replaced_with_the_same_size_and_mtime(tiny_config, tmp_path: Path) -> None:
    """``cp -p`` and rsync keep size and mtime: the fingerprint must see the content."""
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    text = corpus.read_text(encoding="utf-8")
    stat_before = corpus.stat()
    out = tmp_path / "idx"
    build_index((c := _bm25(tiny_config, tmp_path / "made")).corpus, c.index, out_dir=tmp_path / "made", corpus_paths=[corpus])
    os.replace(tmp_path / "made", tmp_path / "idx.partial")
    swapped = text.replace("한국", "조선", 1)
    assert len(swapped.encode()) == len(text.encode()) and swapped != text
    corpus.write_text(swapped, encoding="utf-8")
    os.utime(corpus, ns=(stat_before.st_atime_ns, stat_before.st_mtime_ns))
    with pytest.raises(InputError, match="idx.partial: the finished build there was made from another corpus or config"):
        build_index((c := _bm25(tiny_config, out)).corpus, c.index, out_dir=out, corpus_paths=[corpus], resume=True)


def test_atomic_dirs_give_library_written_files_the_usual_modes(tmp_path: Path, umask022: None) -> None:
    """safetensors writes 0600 files (adapters, checkpoints); krqa's outputs are 0644 like everything else."""
    import torch
    from safetensors.torch import save_file

    from krqa.fsutil import atomic_dir

    with atomic_dir(tmp_path / "adapter") as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp / "adapter_model.safetensors"))
    assert _modes(tmp_path / "adapter") == {("dir", 0o755), ("file", 0o644)}

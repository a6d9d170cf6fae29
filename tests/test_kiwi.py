"""One Kiwi analysis for sentences and terms: the text and per-word modes agree where they should, the word
cache stays bounded, and a chunk's terms are those of its own span."""

from __future__ import annotations

from krqa.corpus.chunking import Chunker
from krqa.corpus.config import ChunkingConfig
from krqa.corpus.document import Document
from krqa.index.config import BM25Config
from krqa.index.tokenize import KiwiTokenizer, make_analyzer
from krqa.kiwi import KiwiAnalyzer, TermRules

TEXT = '지미 카터는 조지아주에서 태어났다. 그는 "땅콩 농부"로 알려졌다! 정말 그랬을까? 1953년 해군 대위로 예편하였다'
RULES = TermRules(frozenset({"NNG", "NNP", "SN", "VV"}))


def test_words_mode_splits_sentences_where_the_text_mode_does() -> None:
    text = KiwiAnalyzer("text", RULES).analyze([TEXT])[0]
    words = KiwiAnalyzer("words", RULES).analyze([TEXT])[0]
    assert [TEXT[a:b] for a, b in words.sentences] == [TEXT[a:b] for a, b in text.sentences] == [
        "지미 카터는 조지아주에서 태어났다.", '그는 "땅콩 농부"로 알려졌다!', "정말 그랬을까?", "1953년 해군 대위로 예편하였다"]
    assert {"지미", "카터", "땅콩", "농부", "1953", "해군", "대위"} <= set(words.terms) & set(text.terms)  # context may split a compound differently
    at = dict(zip(words.terms, words.positions, strict=True))
    assert all(TEXT[at[t]:at[t] + len(t)] == t for t in ("지미", "카터", "땅콩", "농부", "1953", "예편"))


def test_word_cache_is_bounded_and_clearing_keeps_answers_whole() -> None:
    small = KiwiAnalyzer("words", RULES, cache_words=4)
    first = small.analyze([TEXT])[0].terms
    again = small.analyze(["카터는 땅콩 농부", TEXT])
    assert len(small._words) == len(set(("카터는 땅콩 농부 " + TEXT).split()))  # cleared, then filled by this batch only
    assert again[1].terms == first and again[0].terms == ["카터", "땅콩", "농부"]


def test_tokenizer_terms_equal_the_chunk_terms_of_a_whole_text() -> None:
    cfg = BM25Config(analysis="words", tags=["NNG", "NNP"], bigrams=True)
    doc = Document(id="1", title="지미 카터", source="t", sections=[("", TEXT)])
    chunker = Chunker(ChunkingConfig(max_size=500, prefix_title=True), analyzer=make_analyzer(cfg, 1), bigrams=True)
    (chunk,) = chunker.candidates([doc])
    assert chunk.terms == KiwiTokenizer(cfg)("지미 카터 " + TEXT)  # title prefix, then the body, then pairs
    small = Chunker(ChunkingConfig(max_size=60, overlap_sentences=0, prefix_title=False), analyzer=make_analyzer(cfg, 1))
    chunks = small.candidates([doc])
    assert len(chunks) > 1 and [t for c in chunks for t in c.terms] == KiwiTokenizer(cfg.model_copy(update={"bigrams": False}))(TEXT)


def test_a_long_text_is_analysed_in_blocks_that_add_up(monkeypatch) -> None:
    import krqa.kiwi as kiwi

    sentence = "그는 땅콩 농부로 알려졌다. "
    text = sentence * 40
    whole = KiwiAnalyzer("text", RULES).analyze([text])[0]
    monkeypatch.setattr(kiwi, "BLOCK_CHARS", 100)  # about six sentences a block, cut at a space
    blocks = KiwiAnalyzer("text", RULES).analyze([text])[0]
    assert blocks.sentences == whole.sentences and blocks.terms == whole.terms and blocks.positions == whole.positions


def test_jsonl_and_squad_documents_are_cut_to_max_page_chars(tmp_path) -> None:
    import json

    from krqa.corpus.document import Document, Skip
    from krqa.corpus.sources import iter_jsonl, iter_squad

    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps({"id": "1", "title": "t", "text": "가" * 5000}) + "\n" + json.dumps({"id": "2", "title": "u", "text": "나" * 10}) + "\n")
    records = list(iter_jsonl(path, max_page_chars=1000))
    assert [type(r) for r in records] == [Skip, Document, Document] and records[0].reason == "page_truncated"
    assert len(records[1].text) == 1000 and records[2].text == "나" * 10
    squad = tmp_path / "s.json"
    squad.write_text(json.dumps({"data": [{"title": "a", "paragraphs": [{"context": "다" * 3000, "qas": []}]}]}))
    records = list(iter_squad(squad, max_page_chars=1000))
    assert records[0].reason == "page_truncated" and len(records[1].text) == 1000

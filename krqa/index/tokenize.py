"""Kiwi morpheme tokenizer for BM25: the same rules index chunks and parse queries.

Korean words glue particles and endings onto stems (훈민정음을, 창제하였다), so whitespace tokens rarely match
between a question and a passage; content morphemes do. The analysis itself (on running text or per word,
``index.bm25.analysis``) lives in :mod:`krqa.kiwi`, shared with chunking so a build analyses each text once.
"""

from __future__ import annotations

import unicodedata

from krqa.index.config import BM25Config
from krqa.kiwi import KiwiAnalyzer, TermRules, with_bigrams


def has_content(text: str) -> bool:
    """True when the text holds at least one letter or digit; punctuation-only queries are rejected on this."""
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)


def term_rules(cfg: BM25Config) -> TermRules:
    return TermRules(tags=frozenset(t.split("-", 1)[0] for t in cfg.tags), lemma=cfg.lemma, lowercase=cfg.lowercase,
                     stopwords=frozenset(cfg.stopwords))


def make_analyzer(cfg: BM25Config, workers: int | None = None) -> KiwiAnalyzer:
    """The analyzer that turns text into this config's terms (``workers`` Kiwi threads; default the config's)."""
    return KiwiAnalyzer(cfg.analysis, term_rules(cfg), cfg.kiwi_workers if workers is None else workers)


class KiwiTokenizer:
    """Text -> BM25 terms (with adjacent-term bigrams when configured), as the index was built."""

    def __init__(self, cfg: BM25Config) -> None:
        self.bigrams = cfg.bigrams
        self.analyzer = make_analyzer(cfg)

    def finish(self, terms: list[str]) -> list[str]:
        return with_bigrams(terms) if self.bigrams else terms

    def tokenize(self, texts: list[str]) -> list[list[str]]:
        """Batched: handing Kiwi a list lets its worker threads split the work."""
        return [self.finish(a.terms) for a in self.analyzer.analyze(list(texts))]

    def __call__(self, text: str) -> list[str]:
        return self.finish(self.analyzer.terms(text))

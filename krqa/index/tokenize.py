"""Kiwi morpheme tokenizer for BM25: the same function indexes chunks and parses queries.

Korean words glue particles and endings onto stems (훈민정음을, 창제하였다), so whitespace tokens rarely match
between a question and a passage; content morphemes do.
"""

from __future__ import annotations

import functools
import os
import unicodedata

from krqa.index.config import BM25Config

_LEMMA_TAGS = frozenset({"VV", "VA", "VX", "VCP", "VCN"})


@functools.lru_cache(maxsize=4)
def _kiwi(workers: int):
    """Kiwi loads its model in about a second, so one instance per worker count serves the whole process."""
    from kiwipiepy import Kiwi

    return Kiwi(num_workers=workers or (os.cpu_count() or 1))


def has_content(text: str) -> bool:
    """True when the text holds at least one letter or digit; punctuation-only queries are rejected on this."""
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)


class KiwiTokenizer:
    """Morphemes whose tag (``VV-R`` is read as ``VV``) is in the configured set, minus stopwords."""

    def __init__(self, cfg: BM25Config) -> None:
        self.tags = frozenset(t.split("-", 1)[0] for t in cfg.tags)
        self.lemma = cfg.lemma
        self.bigrams = cfg.bigrams
        self.lowercase = cfg.lowercase
        self.stopwords = frozenset(cfg.stopwords)
        self.batch_size = cfg.batch_size
        self.kiwi = _kiwi(cfg.kiwi_workers)

    def _terms(self, tokens) -> list[str]:
        out = []
        for tok in tokens:
            tag = tok.tag.split("-", 1)[0]
            if tag not in self.tags:
                continue
            form = tok.lemma if self.lemma and tag in _LEMMA_TAGS else tok.form
            if self.lowercase and tag == "SL":
                form = form.lower()
            if form and form not in self.stopwords:
                out.append(form)
        if self.bigrams:
            out += [f"{a} {b}" for a, b in zip(out, out[1:])]
        return out

    def tokenize(self, texts: list[str]) -> list[list[str]]:
        """Batched: handing Kiwi a list lets its worker threads split the work."""
        if not texts:
            return []
        return [self._terms(tokens) for tokens in self.kiwi.tokenize(list(texts))]

    def __call__(self, text: str) -> list[str]:
        return self._terms(self.kiwi.tokenize(text))

"""One Kiwi analysis per text, shared by sentence splitting (chunking) and BM25 terms (indexing and queries).

Kiwi is the expensive part of building an index: about 35,000 characters a second per core, so the whole
Korean Wikipedia (~350 M characters) costs ~10,000 CPU-seconds per pass. Two ways to analyse:

- ``text``: Kiwi on the running text (``split_into_sents(..., return_tokens=True)``), one pass giving both the
  sentences and their morphemes; context decides ambiguous words.
- ``words``: Kiwi on each distinct whitespace-separated word once, cached. Korean words repeat heavily
  (Zipf), so a dump needs a few million analyses instead of ~100 M words in context; a word that ends in a
  sentence-final ending followed by ``.``/``?``/``!`` ends a sentence. Context-free, so a handful of ambiguous
  words (나는: 나/NP or 날다/VV) get one reading everywhere, queries included.

Both give, per text, Kiwi's sentence spans and the BM25 terms with the character offset of their morpheme, so a
chunk's terms are those inside its span and nothing is analysed twice.
"""

from __future__ import annotations

import bisect
import functools
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Analysis = Literal["text", "words"]

_LEMMA_TAGS = frozenset({"VV", "VA", "VX", "VCP", "VCN"})
_WORD = re.compile(r"\S+")
_CLOSERS = frozenset({"SSC", "SF"})
_FINAL_PUNCT = frozenset({".", "?", "!", "…"})
BLOCK_CHARS = 20_000
"""The longest text Kiwi analyses in context at once (see ``_by_text``)."""
_WORD_MATCH = 3
"""``Match.URL | Match.EMAIL``: a lone word needs no hashtag, mention or serial patterns, and skipping them (and
``z_coda``, which splits codas glued on in chat text) makes Kiwi ~1.5x faster per word."""


@functools.lru_cache(maxsize=4)
def get_kiwi(workers: int = 0):
    """Kiwi loads its model in about a second; one instance per worker-thread count serves the whole process
    (0: all cores)."""
    from kiwipiepy import Kiwi  # start-up time: `krqa --help` loads this module; Kiwi loads only to tokenize

    return Kiwi(num_workers=workers or (os.cpu_count() or 1))


@dataclass(frozen=True)
class TermRules:
    """Which morphemes become BM25 terms: tags (``VV-R`` is read as ``VV``), lemma for verbs, lower-cased Latin,
    stopwords removed."""

    tags: frozenset[str]
    lemma: bool = False
    lowercase: bool = True
    stopwords: frozenset[str] = frozenset()

    def term(self, form: str, tag: str, lemma: str) -> str | None:
        tag = tag.split("-", 1)[0]
        if tag not in self.tags:
            return None
        out = lemma if self.lemma and tag in _LEMMA_TAGS else form
        if self.lowercase and tag == "SL":
            out = out.lower()
        return out if out and out not in self.stopwords else None


@dataclass
class TextAnalysis:
    """Kiwi's sentence spans of one text, and its terms (in order) with the offset of each term's morpheme."""

    sentences: list[tuple[int, int]]
    terms: list[str]
    positions: list[int]

    def terms_between(self, start: int, end: int) -> list[str]:
        return self.terms[bisect.bisect_left(self.positions, start):bisect.bisect_left(self.positions, end)]


def with_bigrams(terms: list[str]) -> list[str]:
    """The terms followed by each adjacent pair, so word order and split compounds (국무 장관 / 국무장관) count."""
    return terms + [f"{a} {b}" for a, b in zip(terms, terms[1:])]


class KiwiAnalyzer:
    """Sentences and terms of many texts per call; ``rules`` None skips term extraction (chunking alone)."""

    def __init__(self, mode: Analysis = "text", rules: TermRules | None = None, workers: int = 0, cache_words: int = 1_000_000) -> None:
        self.mode = mode
        self.rules = rules
        self.kiwi = get_kiwi(workers)
        self.cache_words = cache_words
        self._words: dict[str, tuple[tuple[str, ...], tuple[int, ...], bool]] = {}

    def analyze(self, texts: list[str]) -> list[TextAnalysis]:
        if not texts:
            return []
        return self._by_text(texts) if self.mode == "text" else self._by_word(texts)

    def terms(self, text: str) -> list[str]:
        """All terms of one text (a query), without bigrams."""
        return self.analyze([text])[0].terms

    def _by_text(self, texts: list[str]) -> list[TextAnalysis]:
        # Kiwi's sentence split grows faster than the text (100 K characters 2.1 s, 200 K 8 s): a long text goes in
        # blocks of at most BLOCK_CHARS, cut at a line break or sentence end if it has one, and the blocks' results
        # are put together.
        blocks: list[tuple[int, int, int]] = []  # (text number, start, end)
        for i, text in enumerate(texts):
            start = 0
            while len(text) - start > BLOCK_CHARS:
                end = _block_end(text, start, start + BLOCK_CHARS)
                blocks.append((i, start, end))
                start = end
            blocks.append((i, start, len(text)))
        out = [TextAnalysis([], [], []) for _ in texts]
        rules = self.rules
        results = self.kiwi.split_into_sents([texts[i][a:b] for i, a, b in blocks], z_coda=False, return_tokens=rules is not None)
        for (i, a, _), sents in zip(blocks, results, strict=True):
            analysis = out[i]
            analysis.sentences.extend((a + s.start, a + s.end) for s in sents)
            if rules is not None:
                for sent in sents:
                    for tok in sent.tokens:
                        term = rules.term(tok.form, tok.tag, tok.lemma if rules.lemma else tok.form)
                        if term is not None:
                            analysis.terms.append(term)
                            analysis.positions.append(a + tok.start)
        return out

    def _by_word(self, texts: list[str]) -> list[TextAnalysis]:
        words = [[(m.start(), m.group()) for m in _WORD.finditer(text)] for text in texts]
        cache = self._words
        missing = list({w for ws in words for _, w in ws if w not in cache})
        if len(cache) + len(missing) > self.cache_words:
            cache.clear()  # a bounded cache: the frequent words come back within the next batches
            missing = list({w for ws in words for _, w in ws})
        for word, tokens in zip(missing, self.kiwi.tokenize(missing, z_coda=False, match_options=_WORD_MATCH), strict=True):
            cache[word] = self._word_entry(tokens)
        out = []
        for ws in words:
            sentences: list[tuple[int, int]] = []
            terms: list[str] = []
            positions: list[int] = []
            start = None
            for at, word in ws:
                word_terms, offsets, ends = cache[word]
                terms.extend(word_terms)
                positions.extend(at + o for o in offsets)
                if start is None:
                    start = at
                if ends:
                    sentences.append((start, at + len(word)))
                    start = None
            if start is not None:
                last_at, last = ws[-1]
                sentences.append((start, last_at + len(last)))
            out.append(TextAnalysis(sentences, terms, positions))
        return out

    def _word_entry(self, tokens) -> tuple[tuple[str, ...], tuple[int, ...], bool]:
        terms: list[str] = []
        offsets: list[int] = []
        if self.rules is not None:
            for tok in tokens:
                term = self.rules.term(tok.form, tok.tag, tok.lemma if self.rules.lemma else tok.form)
                if term is not None:
                    terms.append(term)
                    offsets.append(tok.start)
        return tuple(terms), tuple(offsets), _ends_sentence(tokens)


def _block_end(text: str, start: int, limit: int) -> int:
    """Where a block of ``text[start:limit]`` ends: after its last line break, else after its last ``. ``
    (a sentence end in Korean prose), else after its last space, else at ``limit``."""
    for sep in ("\n", ". ", " "):
        at = text.rfind(sep, start + 1, limit)
        if at > start:
            return at + len(sep)
    return limit


def _ends_sentence(tokens: Iterable) -> bool:
    """A word ends a sentence when, closing quotes and brackets aside, it ends in final punctuation right after a
    sentence-final ending (다., 까?), or in ``?``/``!`` alone."""
    tail = list(tokens)
    while tail and tail[-1].tag == "SSC":
        tail.pop()
    if not tail or tail[-1].tag != "SF" or tail[-1].form[-1:] not in _FINAL_PUNCT:
        return False
    if tail[-1].form[-1:] in "?!":
        return True
    before = [t for t in tail[:-1] if t.tag not in _CLOSERS]
    return bool(before) and before[-1].tag.split("-", 1)[0] == "EF"

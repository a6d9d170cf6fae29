"""Documents to retrieval chunks: Kiwi sentence splitting in batches, greedy packing with sentence overlap,
then length, Korean-ratio and duplicate filters.

A chunk never ends inside a sentence; only a sentence longer than the limit on its own is cut, at a space.
``char_start``/``char_end`` locate each chunk in its section's text exactly, so ``text`` is a plain slice.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from krqa.corpus.config import ChunkingConfig
from krqa.corpus.dedup import ExactDedup, NearDedup
from krqa.corpus.document import SECTION_SEP, Document
from krqa.kiwi import KiwiAnalyzer, TextAnalysis, with_bigrams

LengthFn = Callable[[list[str]], list[int]]
"""Sizes of many texts at once (one tokenizer call per batch when counting encoder tokens)."""

_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_LETTER = re.compile(r"[^\W\d_]")


@dataclass
class Chunk:
    doc_id: str
    source: str
    title: str
    section: str
    url: str
    text: str
    index_text: str
    char_start: int
    char_end: int
    terms: list[str] | None = None
    """BM25 terms of ``index_text`` (title/section prefix and body), when the chunker extracts them."""
    ref: tuple[int, int] = (-1, -1)
    """(piece, candidate number) in a build, so the BM25 postings of accepted chunks can be found."""

    def to_row(self) -> dict:
        return {"doc_id": self.doc_id, "source": self.source, "title": self.title, "section": self.section, "url": self.url,
                "text": self.text, "index_text": self.index_text, "char_start": self.char_start, "char_end": self.char_end}


def char_lengths(texts: list[str]) -> list[int]:
    return [len(t) for t in texts]


def korean_ratio(text: str) -> float:
    letters = len(_LETTER.findall(text))
    return len(_HANGUL.findall(text)) / letters if letters else 0.0


def _split_newlines(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Kiwi joins list items and table rows across single newlines; a line break always ends a sentence."""
    pos = start
    while pos < end:
        nl = text.find("\n", pos, end)
        stop = end if nl < 0 else nl
        left, right = pos, stop
        while left < right and text[left].isspace():
            left += 1
        while right > left and text[right - 1].isspace():
            right -= 1
        if right > left:
            yield left, right
        pos = stop + 1


def _cut_long(text: str, start: int, end: int, limit: int) -> Iterator[tuple[int, int]]:
    """Split one over-long sentence into pieces of at most ``limit`` chars, preferring spaces."""
    while end - start > limit:
        cut = text.rfind(" ", start + 1, start + limit + 1)
        if cut <= start:
            cut = start + limit
        yield start, cut
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if end > start:
        yield start, end


def pack(spans: list[tuple[int, int]], sizes: list[int], max_size: int, overlap: int, by_span: bool) -> list[tuple[int, int]]:
    """Greedy packing of sentences ``[i, j)`` into chunks of at most ``max_size``.

    ``by_span`` measures a chunk as the characters it covers (gaps included); otherwise sizes are summed
    (tokens). The next chunk restarts ``overlap`` sentences back, trimmed so it still fits a new sentence.
    """

    def cost(i: int, j: int) -> int:
        return spans[j - 1][1] - spans[i][0] if by_span else sum(sizes[i:j])

    out: list[tuple[int, int]] = []
    n = len(spans)
    i = 0
    while i < n:
        j = i + 1
        while j < n and cost(i, j + 1) <= max_size:
            j += 1
        out.append((i, j))
        if j >= n:
            break
        nxt = max(j - overlap, i + 1)
        while nxt < j and cost(nxt, j + 1) > max_size:
            nxt += 1
        i = nxt
    return out


@dataclass
class Screening:
    """What :meth:`Chunker.screen` found per chunk: a drop reason or None, exact-dedup keys, and MinHash
    signatures of the chunks that passed the length and Korean-ratio checks (in order)."""

    reasons: list[str | None]
    keys: list[bytes]
    sigs: np.ndarray | None


@dataclass
class ChunkStats:
    chunks: int = 0
    dropped: Counter = field(default_factory=Counter)


class Chunker:
    """Turns a document stream into accepted chunks; keeps duplicate state across the whole build."""

    def __init__(self, cfg: ChunkingConfig, length_fn: LengthFn | None = None, analyzer: KiwiAnalyzer | None = None, bigrams: bool = False):
        """``analyzer`` with term rules makes every chunk carry its BM25 terms (``bigrams`` adds adjacent pairs),
        from the same Kiwi analysis that splits the sentences; without one, Kiwi splits running text."""
        if cfg.unit == "tokens" and length_fn is None:
            raise ValueError("chunking.unit=tokens needs the encoder tokenizer's length function")
        self.cfg = cfg
        self.length_fn = length_fn or char_lengths
        self._analyzer = analyzer
        self.bigrams = bigrams
        self.exact = ExactDedup() if cfg.dedup else None
        self.near = NearDedup(cfg.near_dup_threshold) if cfg.near_dup_threshold < 1 else None
        self.stats = ChunkStats()

    @property
    def analyzer(self) -> KiwiAnalyzer:
        """Loaded on first use: a parallel build's parent only accepts chunks and never needs Kiwi."""
        if self._analyzer is None:
            self._analyzer = KiwiAnalyzer("text", None, self.cfg.kiwi_workers)
        return self._analyzer

    @property
    def with_terms(self) -> bool:
        return self._analyzer is not None and self._analyzer.rules is not None

    def sentences(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        """Sentence spans for many texts with one Kiwi call (its worker threads split the list)."""
        return [self._spans(text, a) for text, a in zip(texts, self.analyzer.analyze(texts), strict=True)]

    @staticmethod
    def _spans(text: str, analysis: TextAnalysis) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        for start, end in analysis.sentences:
            spans.extend(_split_newlines(text, start, end))
        return spans

    def _limit_spans(self, text: str, spans: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[int]]:
        sizes = self.length_fn([text[s:e] for s, e in spans])
        if max(sizes, default=0) <= self.cfg.max_size:
            return spans, sizes
        fixed: list[tuple[int, int]] = []
        for (s, e), size in zip(spans, sizes, strict=True):
            if size <= self.cfg.max_size:
                fixed.append((s, e))
            else:
                chars_per_unit = (e - s) / max(size, 1)
                fixed.extend(_cut_long(text, s, e, max(1, int(self.cfg.max_size * chars_per_unit * 0.95))))
        return fixed, self.length_fn([text[s:e] for s, e in fixed])

    def _chunks_for(self, doc: Document, section: str, text: str, analysis: TextAnalysis, prefix_terms: list[str] | None) -> Iterator[Chunk]:
        spans, sizes = self._limit_spans(text, self._spans(text, analysis))
        prefix = doc.title + (SECTION_SEP + section if section else "")
        for i, j in pack(spans, sizes, self.cfg.max_size, self.cfg.overlap_sentences, self.cfg.unit == "chars"):
            start, end = spans[i][0], spans[j - 1][1]
            body = text[start:end]
            index_text = f"{prefix}\n{body}" if self.cfg.prefix_title else body
            terms = None
            if prefix_terms is not None:
                terms = prefix_terms + analysis.terms_between(start, end)
                terms = with_bigrams(terms) if self.bigrams else terms
            yield Chunk(doc.id, doc.source, doc.title, section, doc.url, body, index_text, start, end, terms)

    def candidates_per_doc(self, docs: list[Document]) -> list[list[Chunk]]:
        """Analyse (one Kiwi call for all texts, and for the title/section prefixes when terms are wanted) and
        pack, before any filter: pure per document, so worker processes can run it."""
        units = [(doc, section, text) for doc in docs for section, text in doc.sections]
        prefixes = [doc.title + (SECTION_SEP + section if section else "") for doc, section, _ in units] \
            if self.with_terms and self.cfg.prefix_title else []
        analyses = self.analyzer.analyze([text for _, _, text in units] + prefixes)
        body, heads = analyses[:len(units)], analyses[len(units):]
        out: list[list[Chunk]] = []
        k = 0
        for doc in docs:
            chunks: list[Chunk] = []
            for section, text in doc.sections:
                prefix_terms = (heads[k].terms if heads else []) if self.with_terms else None
                chunks.extend(self._chunks_for(doc, section, text, body[k], prefix_terms))
                k += 1
            out.append(chunks)
        return out

    def candidates(self, docs: list[Document]) -> list[Chunk]:
        return [c for doc_chunks in self.candidates_per_doc(docs) for c in doc_chunks]

    def screen(self, chunks: list[Chunk]) -> Screening:
        """The per-chunk half of the filters (length, Korean ratio, dedup hashes); no state is touched."""
        reasons: list[str | None] = []
        for chunk in chunks:
            if len(chunk.text.strip()) < self.cfg.min_chars:
                reasons.append("too_short")
            elif korean_ratio(chunk.text) < self.cfg.min_korean_ratio:
                reasons.append("low_korean_ratio")
            else:
                reasons.append(None)
        keys = [ExactDedup.key(c.text) if r is None else b"" for c, r in zip(chunks, reasons, strict=True)] if self.exact is not None else []
        sigs = self.near.signatures([c.text for c, r in zip(chunks, reasons, strict=True) if r is None]) if self.near is not None else None
        return Screening(reasons, keys, sigs)

    def accept(self, chunks: list[Chunk], screening: Screening) -> list[Chunk]:
        """The stateful half, in corpus order: first-seen-wins duplicate removal across the whole build."""
        kept: list[Chunk] = []
        kept_sigs: list[int] = []
        passed = 0
        for i, (chunk, reason) in enumerate(zip(chunks, screening.reasons, strict=True)):
            if reason is not None:
                self.stats.dropped[reason] += 1
                continue
            passed += 1
            if self.exact is not None and self.exact.is_duplicate_key(screening.keys[i]):
                self.stats.dropped["exact_duplicate"] += 1
            else:
                kept.append(chunk)
                kept_sigs.append(passed - 1)
        if self.near is None or screening.sigs is None:
            dups = [False] * len(kept)
        else:
            dups = self.near.filter_signatures(screening.sigs[kept_sigs])
        out = []
        for chunk, dup in zip(kept, dups, strict=True):
            if dup:
                self.stats.dropped["near_duplicate"] += 1
            else:
                self.stats.chunks += 1
                out.append(chunk)
        return out

    def chunk_batch(self, docs: list[Document]) -> list[Chunk]:
        chunks = self.candidates(docs)
        return self.accept(chunks, self.screen(chunks))

    def chunk_documents(self, docs: Iterable[Document]) -> Iterator[Chunk]:
        batch: list[Document] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) >= self.cfg.batch_size:
                yield from self.chunk_batch(batch)
                batch = []
        if batch:
            yield from self.chunk_batch(batch)

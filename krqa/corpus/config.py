"""Config for reading dumps and cutting them into chunks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from krqa.configbase import Section

SourceFormat = Literal["auto", "mediawiki", "namuwiki", "jsonl", "squad", "wikiextractor"]


class SourceConfig(Section):
    path: str = Field(description="Dump file: MediaWiki export XML (.xml/.bz2), Namuwiki JSON array, JSONL, SQuAD JSON, or wikiextractor output (a folder of AA/wiki_00 … files or one file of <doc> blocks; plain, .bz2, .xz or .gz).")
    format: SourceFormat = Field("auto", description="Reader to use; 'auto' decides from the file name and first bytes (a folder: wikiextractor).")
    name: str | None = Field(None, description="Source label stored with each chunk (default: derived from the format).")
    limit: int | None = Field(None, ge=1, description="Read at most this many documents (for quick trials).")


class ChunkingConfig(Section):
    unit: Literal["chars", "tokens"] = Field("chars", description="What max_size counts: characters, or tokens of the dense encoder's tokenizer.")
    max_size: int = Field(500, ge=50, description="Upper bound of a chunk's body, in `unit`.")
    overlap_sentences: int = Field(1, ge=0, description="Sentences repeated from the end of one chunk at the start of the next.")
    min_chars: int = Field(40, ge=0, description="Chunks with fewer body characters are dropped.")
    min_korean_ratio: float = Field(0.3, ge=0, le=1, description="Minimum share of Hangul among letters; filters non-Korean noise.")
    prefix_title: bool = Field(True, description="Prefix 'title > section' to the text that is indexed.")
    dedup: bool = Field(True, description="Drop exact duplicate chunks (after whitespace normalisation).")
    near_dup_threshold: float = Field(0.9, ge=0, le=1, description="Jaccard similarity of character 5-gram shingles above which a chunk is a near duplicate (1 disables).")
    kiwi_workers: int = Field(0, ge=0, description="Kiwi worker threads for sentence splitting; 0 uses all cores.")
    batch_size: int = Field(256, ge=1, description="Documents sent to Kiwi per batch.")


class CorpusConfig(Section):
    sources: list[SourceConfig] = Field(default_factory=list, description="Dumps to index, in order.")
    strict: bool = Field(False, description="Fail on the first bad page instead of skipping and reporting it.")
    max_page_chars: int = Field(1_000_000, ge=1000, description="Characters read per page or document (wiki markup, JSONL text, a SQuAD paragraph); a longer one is cut to this size and reported as page_truncated (bounds the time and memory one hostile record can take).")
    chunking: ChunkingConfig = Field(default_factory=ChunkingConfig, description="How documents become chunks.")
    workers: int = Field(0, ge=0, description="Worker processes that read, clean and chunk pieces of the dumps (0: all cores; 1: one process). The chunks are the same for any count; chunking.unit=tokens reads in one process.")
    piece_mb: float = Field(16.0, gt=0, description="Size of a dump piece handed to one worker (MB of file; MediaWiki multistream .bz2 in whole streams).")

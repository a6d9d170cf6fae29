"""Dump readers (MediaWiki XML, Namuwiki JSON, JSONL, SQuAD), markup cleaning and Kiwi chunking."""

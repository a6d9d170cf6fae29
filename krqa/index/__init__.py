"""BM25 (bm25s over Kiwi morphemes) and dense (FAISS) indexes, and the retrievers over them."""

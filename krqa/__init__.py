"""krqa: Korean retrieval-augmented QA for the NIKL 한국문화 질의응답 task."""

__version__ = "0.1.0"

"""Write corpus/tiny_random_text.json: the text the ``tiny-random`` test model's tokenizer is trained on.

The bundled questions, the sample dumps as krqa's readers clean them, and the default prompt wording. Run it
after changing any of those (tests/test_generation.py fails until the file is current):

    PYTHONPATH=. python scripts/tiny_random_text.py
"""

from __future__ import annotations

import json
from pathlib import Path

from krqa.corpus.config import SourceConfig
from krqa.corpus.pipeline import iter_documents
from krqa.fsutil import atomic_write_text
from krqa.qa.config import DEFAULT_INSTRUCTIONS, DEFAULT_SYSTEM
from krqa.tiny_random import REPO_DIR, TINY_TEXT

QA_FILE = "corpus/sample_qa.json"
DUMPS = (("corpus/sample_kowiki.xml.bz2", "mediawiki"), ("corpus/sample_namuwiki.json", "namuwiki"))


def tiny_texts(repo: Path = REPO_DIR) -> list[str]:
    """The texts in file order: questions (category, domain, keyword, question, answer), dump titles and sections,
    prompt wording."""
    texts: list[str] = []
    for rec in json.loads((repo / QA_FILE).read_text(encoding="utf-8")):
        inp = rec.get("input", {})
        texts += [str(inp.get(k, "")) for k in ("category", "domain", "topic_keyword", "question")]
        texts.append(str(rec.get("output", {}).get("answer", "")))
    for rel, fmt in DUMPS:
        for doc in iter_documents(SourceConfig(path=str(repo / rel), format=fmt)):
            texts.append(doc.title)
            texts += [t for _, t in doc.sections]
    texts += [DEFAULT_SYSTEM, *DEFAULT_INSTRUCTIONS.values(), "정답 질문 보기 참고 문서 답변"]
    return [t for t in texts if t.strip()]


def render(texts: list[str]) -> str:
    return json.dumps(texts, ensure_ascii=False, indent=0) + "\n"


if __name__ == "__main__":
    atomic_write_text(REPO_DIR / TINY_TEXT, render(tiny_texts()))
    print(f"wrote {REPO_DIR / TINY_TEXT}")

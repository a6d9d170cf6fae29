"""Guessing a question's type when a client does not say it (the OpenAI-compatible endpoint's chat messages).

The competition's three types differ in form: 선다형 questions carry numbered options, 서술형 ones ask to explain
or describe, everything else wants a short answer. A wrong guess costs little: the type picks the prompt's
instruction and the answer's length, and a client that knows the type sends it.
"""

from __future__ import annotations

import re

from krqa.qa.data import DESC, MC, SHORT, parse_options

# 설명하시오 / 서술하세요 / 기술하라 / 논하시오 / 쓰시오 … and "…에 대해 설명해 주세요".
_DESC_VERB = re.compile(r"(?:설명|서술|기술|논술|묘사|소개|요약|비교)\s*(?:하|해|하여|해서|할\s*것)|논하|(?:쓰|적으)(?:시오|세요|라)")


def detect_type(question: str, options: list[str] | None = None) -> str:
    """선다형 with options (given, or numbered inline as in the competition files), 서술형 when it asks for an
    explanation, else 단답형."""
    if options and len(options) >= 2:
        return MC
    if parse_options(question)[1]:
        return MC
    if _DESC_VERB.search(question):
        return DESC
    return SHORT


def with_options(stem: str, options: list[str]) -> str:
    """The competition's inline form (``stem\\n1\\t… 2\\t…``), which option parsing and the prompts expect."""
    return stem.rstrip() + "\n" + " ".join(f"{n}\t{opt.strip()}" for n, opt in enumerate(options, 1))

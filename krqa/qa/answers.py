"""Turning a raw generation into the answer the official scorer expects, per question type.

The scorer is strict: 선다형 compares the option number as a string, 단답형 is exact match after whitespace
removal, 서술형 is scored against one-paragraph references. Small models (and fine-tuned ones, sometimes) wrap the
answer in prose, particles, quotes or markup; this module removes exactly that and nothing of the answer itself.
Trailing particles are found with Kiwi rather than by suffix lists, so real word endings (윷놀이, 민요, 만 나이)
survive while 세배를 / 부정이다 / 강강술래예요 lose their particle or copula.
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
from collections.abc import Sequence
from typing import Any

from krqa.qa.data import DESC, MC, SHORT, QAItem, normalize_escapes

log = logging.getLogger(__name__)

_CIRCLED = {chr(0x2460 + i): i + 1 for i in range(20)}
_ORDINALS = {"첫": 1, "두": 2, "세": 3, "네": 4, "다섯": 5, "여섯": 6, "일곱": 7, "여덟": 8, "아홉": 9}
_PAIRS = {"'": "'", '"': '"', "“": "”", "‘": "’", "「": "」", "『": "』", "《": "》", "〈": "〉", "<": ">", "[": "]", "(": ")", "【": "】", "{": "}", "*": "*", "`": "`"}
_LEAD = re.compile(r"^\s*\**\s*(?:정답|답변|대답|답|answer)\s*\**\s*(?:은|는|:|：|=)\s*\**\s*", re.IGNORECASE)
_HANJA = "\u2e80-\u2fdf\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_HANJA_RE = re.compile(f"[{_HANJA}]+")
_HANJA_PAREN = re.compile(rf"\s*[(（\[][^()（）\[\]]*[{_HANJA}][^()（）\[\]]*[)）\]]")
# Morpheme tags stripped from the end of a 단답형 answer: particles, copula, endings, final punctuation. Brackets
# are not among them (A'REX(인천국제공항철도) keeps its parenthesis); wrapping pairs are removed by _unwrap.
_TRAILING_TAGS = ("J", "VCP", "EF", "EP", "EC", "SF", "SE")
# Zero-width characters, replacement characters (half-decoded bytes) and control characters other than newline/tab.
_CONTROL = re.compile(r"[\u200b-\u200d\ufeff\ufffd\x00-\x08\x0b-\x1f\x7f]")
_SENTENCE_END = re.compile(r"[.!?。](?=\s|$)")
_LIST_MARKER = re.compile(r"^(?:[-*•·▪◦]\s+|\d{1,2}[.)]\s+)")


def postprocess(item: QAItem, raw: str, desc_max_chars: int) -> str:
    """The submission answer for ``item`` from the model's raw text; a 서술형 answer is cut at a sentence boundary
    below ``desc_max_chars`` (``generation.desc_max_chars``)."""
    text = _CONTROL.sub("", normalize_escapes(raw or "")).strip()
    if item.question_type == MC:
        return mc_answer(item, text)
    if item.question_type == SHORT:
        return short_answer(text)
    if item.question_type == DESC:
        return desc_answer(text, desc_max_chars)
    raise ValueError(f"unknown question type {item.question_type!r}")


# ---- 선다형 ---------------------------------------------------------------------------------------------------------


def _valid(n: int, n_options: int) -> bool:
    return 1 <= n <= n_options


def mc_number(text: str, n_options: int) -> int | None:
    """The option number the text states (a leading number, 정답: 3, 3번, ③, 세 번째), or None."""
    candidates: list[re.Pattern[str]] = [
        re.compile(r"^\s*\**\s*(\d+)\s*(?:번|\.|\)|:|\*|$|\s)"),
        re.compile(r"(?:정답|답)\s*(?:은|는|:|：|=)?\s*\**\s*(\d+)"),
        re.compile(r"(?<!\d)(\d+)\s*번(?!째)"),
    ]
    for pattern in candidates:
        for match in pattern.finditer(text):
            n = int(match.group(1))
            if _valid(n, n_options):
                return n
    for ch in text:
        if ch in _CIRCLED and _valid(_CIRCLED[ch], n_options):
            return _CIRCLED[ch]
    match = re.search(r"(첫|두|세|네|다섯|여섯|일곱|여덟|아홉)\s*(?:번째|째)", text)
    if match and _valid(_ORDINALS[match.group(1)], n_options):
        return _ORDINALS[match.group(1)]
    return None


def _loose_digit(text: str, n_options: int) -> int | None:
    for match in re.finditer(r"(?<![\d.])(\d)(?![\d.])", text):
        if _valid(int(match.group(1)), n_options):
            return int(match.group(1))
    return None


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def mc_answer(item: QAItem, text: str) -> str:
    """Always a valid option number: a stated number, else the repeated option text, else any lone digit in
    range, else the closest option text, else 1 (the last two are logged)."""
    n_options = len(item.options)
    number = mc_number(text, n_options)
    if number is not None:
        return str(number)
    squashed = _squash(text)
    present = [(len(_squash(opt)), i) for i, opt in enumerate(item.options, 1) if _squash(opt) and _squash(opt) in squashed]
    if present:
        return str(max(present)[1])  # the longest match wins: 떡국 over 떡
    loose = _loose_digit(text, n_options)
    if loose is not None:
        return str(loose)
    if squashed and n_options:
        ratios = [difflib.SequenceMatcher(None, squashed, _squash(opt)).ratio() for opt in item.options]
        best = max(range(n_options), key=lambda i: ratios[i])
        if ratios[best] > 0:
            log.warning("item %s: no option number in %r; closest option text is %d", item.id, text[:80], best + 1)
            return str(best + 1)
    log.warning("item %s: no option number in %r; falling back to 1", item.id, text[:80])
    return "1"


# ---- 단답형 ---------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _kiwi() -> Any:
    from kiwipiepy import Kiwi  # start-up time: Kiwi loads only when an answer is stripped of particles

    return Kiwi()


def _unwrap(text: str) -> str:
    """Remove quotes/brackets around the whole answer (repeatedly), not those inside it (A'REX, 한국(韓國)사)."""
    while len(text) >= 2 and text[0] in _PAIRS and text[-1] == _PAIRS[text[0]]:
        inner = text[1:-1].strip()
        if not inner:
            break
        text = inner
    return text


def strip_particles(text: str) -> str:
    """Drop trailing particles, copula and sentence endings as Kiwi tags them; keep the text if nothing remains."""
    tokens = _kiwi().tokenize(text)
    cut, head = len(text), None
    for tok in reversed(tokens):
        if not tok.tag.startswith(_TRAILING_TAGS):
            head = tok
            break
        cut = tok.start
    # Only after a noun-like word (noun, number, foreign word, symbol): 이다 alone or a verb stays as written.
    stem = text[:cut].rstrip()
    if head is None or not stem or cut == len(text) or not head.tag.startswith(("N", "S", "XSN", "XR")):
        return text
    return stem


def short_answer(text: str) -> str:
    """A few words: first line, no 'answer:' lead, no wrapping quotes, hanja glosses, particles or periods."""
    text = _LEAD.sub("", text, count=1)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    text = _LIST_MARKER.sub("", lines[0]) if lines else ""
    # Everything below may strip a degenerate answer ("...", "(仲秋)") to nothing; an empty answer scores zero
    # for sure, so the first raw word is kept in that case.
    fallback = lines[0].split()[0] if lines else ""
    first = _SENTENCE_END.search(text)
    if first:
        text = text[: first.start()]
    text = _HANJA_PAREN.sub("", text).strip()
    for _ in range(3):
        before = text
        text = _unwrap(text.strip().strip(".,;:!?。~ ").strip())
        text = strip_particles(text) if text else text
        if text == before:
            break
    return re.sub(r"\s+", " ", text).strip() or fallback


# ---- 서술형 ---------------------------------------------------------------------------------------------------------


def _plain(text: str) -> str:
    text = re.sub(r"<[^>\n]{1,40}>", " ", text)  # HTML-ish tags
    text = re.sub(r"(?m)^\s*#{1,6}\s.*$", "", text)  # headings are titles, not part of the paragraph
    text = re.sub(r"(?m)^\s*(?:>\s*|[-*•·▪◦]\s+|\d{1,2}[.)]\s+|[①-⑳]\s*)", "", text)
    text = re.sub(r"(\*\*|__|\*|`)", "", text)
    text = _HANJA_PAREN.sub("", text)
    text = _HANJA_RE.sub("", text)
    text = re.sub(r"\(\s*\)", "", text)
    return text


def cap_at_sentence(text: str, limit: int) -> str:
    """At most ``limit`` characters, ending at the last sentence end inside the limit (a word boundary if none)."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    ends = [m.end() for m in re.finditer(r"[.!?。]", head) if m.end() == len(head) or head[m.end()].isspace()]
    if ends and ends[-1] >= limit // 3:
        return head[: ends[-1]].strip()
    space = head.rfind(" ")
    return head[: space if space > limit // 2 else limit].strip()


_PATH_RUN = re.compile(r"[^\s>]+(?:[ \t]+>[ \t]+[^\s>]+)+")
_PROMPT_MARK = re.compile(r"\[(?:참고 문서|질문|보기|답변|\d{1,2})\]")
_PREDICATE_END = re.compile(r"(?:다|요|음|함|임|됨)[.!?]?(?=\s|$)|[.!?。]")
DESC_MIN_CHARS = 20
COPY_MIN_CHARS = 20


def desc_problem(answer: str, avoid: Sequence[str] = ()) -> str | None:
    """Why a 서술형 answer is not the prose paragraph the scorer compares against, or None when it is.

    Small models copy what they see: section paths ('설날 > 풍습 > 음식'), the prompt's own markup, or the
    instruction itself. ``avoid`` holds the prompt texts an answer must not repeat (system prompt, instruction);
    copying a passage is fine, since that is where the facts come from.
    """
    text = answer.strip()
    if len(text) < DESC_MIN_CHARS:
        return "too short"
    if _PATH_RUN.search(text):
        return "section path"
    if _PROMPT_MARK.search(text):
        return "prompt markup"
    for other in avoid:
        if other and len(other) >= COPY_MIN_CHARS:
            match = difflib.SequenceMatcher(None, text, other, autojunk=False).find_longest_match(0, len(text), 0, len(other))
            if match.size >= COPY_MIN_CHARS:
                return "copies the instruction"
    if not _PREDICATE_END.search(text):
        return "heading-like (no sentence)"
    return None


def _answer_segment(text: str) -> str:
    """The part of a generation between prompt markers that holds the answer. A base model often writes a
    heading, then '[답변]' and the answer; or the answer, then '[질문]' and another turn. The first part that
    reads as a sentence is the answer; without one, the first non-empty part."""
    parts = [p for p in _PROMPT_MARK.split(text) if p.strip()]
    if not parts:
        return text
    return next((p for p in parts if len(p.strip()) >= DESC_MIN_CHARS and _PREDICATE_END.search(p)), parts[0])


def desc_answer(text: str, max_chars: int) -> str:
    """One plain paragraph (no lists, markup or hanja) capped at a sentence boundary."""
    text = _LEAD.sub("", _answer_segment(text), count=1)
    plain = re.sub(r"\s+", " ", _plain(text)).strip()
    if not plain:
        # Only a heading, markup or hanja: keep the words without the markup rather than submit nothing.
        plain = re.sub(r"\s+", " ", re.sub(r"<[^>\n]{1,40}>|[#*`]", " ", text)).strip() or re.sub(r"\s+", " ", text).strip()
    plain = re.sub(r"\s+([,.!?])", r"\1", plain)
    return cap_at_sentence(plain, max_chars)

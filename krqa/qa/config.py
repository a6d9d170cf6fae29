"""Config for prompts and for official scoring."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from krqa.configbase import Section

DEFAULT_SYSTEM = (
    "당신은 한국의 문화, 역사, 지리, 사회, 예술에 정통한 전문가입니다. "
    "질문에 정확하고 간결하게 한국어로 답하세요."
)
DEFAULT_INSTRUCTIONS = {
    "선다형": "다음 질문에 대해 보기 중 정답의 번호 하나만 숫자로 답하세요.",
    "단답형": "다음 질문에 대해 조사나 마침표 없이 몇 단어로 된 짧은 정답만 답하세요.",
    "서술형": "다음 질문에 대해 300~500자 정도의 한 문단으로 서술하세요. 목록, 한자, 마크업은 쓰지 마세요.",
}
# 선다형 when the option's text is what gets scored (generation.mc_target=text): the answer is the option itself.
DEFAULT_MC_TEXT_INSTRUCTION = "다음 질문에 대해 보기 중 정답을 하나 골라 그 내용을 그대로 답하세요."


class PromptVariant(Section):
    system: Optional[str] = Field(None, description="Replaces prompt.system when this variant is selected.")
    instructions: dict[str, str] = Field(default_factory=dict, description="Replaces the instructions of the question types it names.")
    context_header: Optional[str] = Field(None, description="Replaces prompt.context_header.")


class PromptConfig(Section):
    system: str = Field(DEFAULT_SYSTEM, description="System prompt about Korean culture.")
    instructions: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_INSTRUCTIONS), description="Per-question-type instruction (keys 선다형, 단답형, 서술형).")
    context_header: str = Field("[참고 문서]", description="Heading put above the retrieved passages.")
    mc_text_instruction: str = Field(DEFAULT_MC_TEXT_INSTRUCTION, description="선다형 instruction when the answer is the option's text (generation.mc_target=text).")
    passage_sections: bool = Field(False, description="Show each passage's section path ('title > section') in its heading; off by default because small models copy such paths into 서술형 answers.")
    use_chat_template: Literal["auto", "yes", "no"] = Field("auto", description="Use the tokenizer's chat template when it has one ('auto'), always, or never.")
    max_prompt_tokens: int = Field(2048, ge=64, description="Token budget of the whole prompt; passages are cut to fit, never the question.")
    max_passage_chars: int = Field(600, ge=50, description="Each passage is cut to this many characters before the token budget applies.")
    question_header: str = Field("[질문]", description="Heading put above the question stem.")
    options_header: str = Field("[보기]", description="Heading put above the numbered 선다형 options.")
    answer_header: str = Field("[답변]", description="Last line of the plain (no chat template) prompt; the answer follows it.")
    variants: dict[str, PromptVariant] = Field(default_factory=dict, description="Named prompt variants (system/instructions/context_header overrides), to compare prompts from YAML.")
    variant: Optional[str] = Field(None, description="Name of the variant in `variants` to use (none: the base prompt).")

    @model_validator(mode="after")
    def _check_names(self) -> "PromptConfig":
        for where, keys in [("instructions", self.instructions)] + [(f"variants.{n}.instructions", v.instructions) for n, v in self.variants.items()]:
            unknown = sorted(set(keys) - set(DEFAULT_INSTRUCTIONS))
            if unknown:
                raise ValueError(f"{where}: unknown question type(s) {', '.join(unknown)} (expected {', '.join(DEFAULT_INSTRUCTIONS)})")
        if self.variant is not None and self.variant not in self.variants:
            raise ValueError(f"variant {self.variant!r} is not defined in variants ({', '.join(self.variants) or 'none defined'})")
        return self


class EvaluateConfig(Section):
    rouge_tokenizer: Literal["auto", "mecab", "kiwi"] = Field("auto", description="Morpheme tokenizer for ROUGE-1 (official: Mecab; 'auto' uses mecab-ko when installed, else Kiwi).")
    bertscore_model: str = Field("bert-base-multilingual-cased", description="Model id or path for BERTScore F1.")
    bleurt_model: str = Field("lucadiliello/BLEURT-20", description="BLEURT-20 checkpoint (bleurt-pytorch) id or path.")
    batch_size: int = Field(16, ge=1, description="Pairs per BERTScore/BLEURT batch.")
    bertscore_layer: int = Field(9, ge=1, description="Hidden layer whose token embeddings BERTScore matches (9 is bert-score's default for bert-base-multilingual-cased).")
    bertscore_baseline_f: Optional[float] = Field(None, lt=1.0, description="Rescale BERTScore F1 as (F-b)/(1-b) with this baseline b; the official scorer uses none.")
    bleurt_max_length: int = Field(512, ge=8, description="Token limit of a (reference, candidate) pair for BLEURT.")
    model_metrics: bool = Field(True, description="Run BERTScore and BLEURT; when false they are reported as skipped and the official final as unavailable.")
    device: str = Field("auto", description="Torch device for BERTScore/BLEURT ('auto' = cuda when available, else cpu).")

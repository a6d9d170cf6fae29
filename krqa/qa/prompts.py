"""The one prompt format shared by training, prediction and serving.

A model only answers well in the format it was fine-tuned on, so every caller builds prompts here. The user turn
holds, in this order: the per-type instruction, the item's category/domain/topic keyword, the retrieved passages,
and the question with its options one per line; the question sits last so it is closest to where the answer
starts, and passages are what gets cut when the token budget is exceeded (from the last one), never the question.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from krqa.errors import InputError
from krqa.qa.config import DEFAULT_INSTRUCTIONS, PromptConfig
from krqa.qa.data import MC, SHORT, QAItem

log = logging.getLogger(__name__)

# Passages cut to fewer tokens than this are dropped instead: a few words of a document only distract.
MIN_PARTIAL_TOKENS = 24


@dataclass
class Prompt:
    """A built prompt and what went into it (recorded in the prediction details file)."""

    text: str
    n_tokens: int
    contexts_used: int
    contexts_given: int
    truncated: bool = False
    context_chars: list[int] = field(default_factory=list)


def _field(ctx: Any, name: str) -> str:
    value = ctx.get(name, "") if isinstance(ctx, dict) else getattr(ctx, name, "")
    return str(value or "").strip()


class PromptBuilder:
    """Builds prompt text for an item (and optional passages) with the model's own tokenizer."""

    def __init__(self, cfg: PromptConfig, tokenizer: Any, mc_target: str = "number") -> None:
        """``mc_target`` is what a 선다형 answer is: its number or its text after the listed options, or ('cloze')
        its text as the short answer to the question, with no options in the prompt."""
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.mc_target = mc_target
        variant = cfg.variants[cfg.variant] if cfg.variant else None
        self.system = variant.system if variant and variant.system is not None else cfg.system
        self.instructions = {**DEFAULT_INSTRUCTIONS, **cfg.instructions, **(variant.instructions if variant else {})}
        self.context_header = variant.context_header if variant and variant.context_header is not None else cfg.context_header
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if cfg.use_chat_template == "yes" and not has_template:
            raise InputError("prompt.use_chat_template=yes: the model's tokenizer has no chat template")
        self.use_chat = has_template and cfg.use_chat_template != "no"
        self._adds_bos: bool | None = None

    # ---- token counting ----------------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Tokens as generation will see them (special tokens included); a character count without a tokenizer."""
        if not callable(self.tokenizer):
            return len(text)
        return len(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def _body_tokens(self, texts: list[str]) -> list[list[int]]:
        if not callable(self.tokenizer):
            return [list(range(len(t))) for t in texts]
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def _cut_to_tokens(self, text: str, n: int) -> str:
        if not callable(self.tokenizer):
            return text[:n]
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][:n]
        return self.tokenizer.decode(ids, skip_special_tokens=True).rstrip("\ufffd").rstrip()

    @property
    def adds_bos(self) -> bool:
        """Whether tokenizing adds BOS itself, in which case a template's literal BOS would double it."""
        if self._adds_bos is None:
            bos_id = getattr(self.tokenizer, "bos_token_id", None)
            self._adds_bos = bool(callable(self.tokenizer) and bos_id is not None and self.tokenizer("가", add_special_tokens=True)["input_ids"][:1] == [bos_id])
        return self._adds_bos

    # ---- pieces -----------------------------------------------------------------------------------------------------

    def instruction(self, item: QAItem) -> str:
        if item.question_type == MC and self.mc_target == "cloze" and item.options:
            return self.instructions[SHORT]
        if item.question_type == MC and self.mc_target == "text" and item.options:
            return self.cfg.mc_text_instruction
        return self.instructions[item.question_type]

    def question_block(self, item: QAItem, options: Sequence[str] | None = None, stem: str | None = None) -> str:
        """The question and, for 선다형, its options (``options`` shows them in another order)."""
        lines = [self.cfg.question_header, (item.stem if stem is None else stem).strip()]
        shown = list(item.options if options is None else options)
        if item.question_type == MC and shown and self.mc_target != "cloze":
            lines.append(self.cfg.options_header)
            lines += [f"{i}. {opt}" for i, opt in enumerate(shown, 1)]
        return "\n".join(lines)

    def passage_block(self, index: int, ctx: Any, text: str | None = None) -> str:
        title, section = _field(ctx, "title"), _field(ctx, "section")
        heading = f"[{index}] {title}" + (f" > {section}" if section and self.cfg.passage_sections else "")
        body = _field(ctx, "text") if text is None else text
        return f"{heading}\n{body}"

    def _cap(self, text: str) -> str:
        limit = self.cfg.max_passage_chars
        return text if len(text) <= limit else text[:limit].rstrip() + "…"

    def user_message(self, item: QAItem, passages: Sequence[str], options: Sequence[str] | None = None, stem: str | None = None) -> str:
        parts = [self.instruction(item)]
        meta = [f"분류: {item.category}" if item.category else "", f"분야: {item.domain}" if item.domain else "", f"주제어: {item.topic_keyword}" if item.topic_keyword else ""]
        meta = [m for m in meta if m]
        if meta:
            parts.append(" / ".join(meta))
        if passages:
            parts.append(self.context_header + "\n" + "\n\n".join(passages))
        parts.append(self.question_block(item, options, stem))
        return "\n\n".join(parts)

    def render(self, item: QAItem, passages: Sequence[str], options: Sequence[str] | None = None, stem: str | None = None) -> str:
        """Full prompt text ending exactly where the answer starts."""
        user = self.user_message(item, passages, options, stem)
        if not self.use_chat:
            return f"{self.system}\n\n{user}\n\n{self.cfg.answer_header}\n"
        messages = [{"role": "system", "content": self.system}, {"role": "user", "content": user}]
        try:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # templates without a system role raise (jinja2 TemplateError or ValueError)
            if "system" not in str(exc).lower():
                raise
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": f"{self.system}\n\n{user}"}], tokenize=False, add_generation_prompt=True)
        bos = getattr(self.tokenizer, "bos_token", None)
        if bos and text.startswith(bos) and self.adds_bos:
            text = text[len(bos):]
        return text

    # ---- public -----------------------------------------------------------------------------------------------------

    def content_free(self, item: QAItem, options: Sequence[str] | None = None) -> str:
        """The prompt with no passages and an empty question: what the model says about the options unasked,
        used to calibrate option scores."""
        return self.render(item, [], options, stem="")

    def build_prompt(self, item: QAItem, contexts: Sequence[Any] | None = None, options: Sequence[str] | None = None) -> Prompt:
        """The prompt within ``max_prompt_tokens``: passages are dropped from the last (the one that straddles the
        budget is cut to fit when enough room is left); the question is never shortened. ``options`` lists a
        선다형 item's options in another order."""
        contexts = list(contexts or [])
        budget = self.cfg.max_prompt_tokens
        bodies = [self._cap(_field(c, "text")) for c in contexts]
        blocks = [self.passage_block(i, c, b) for i, (c, b) in enumerate(zip(contexts, bodies), 1)]
        text = self.render(item, blocks, options)
        n = self.count_tokens(text)
        if n <= budget or not blocks:
            if n > budget:
                log.warning("item %s: prompt has %d tokens without passages, over prompt.max_prompt_tokens=%d", item.id, n, budget)
            return Prompt(text, n, len(blocks), len(contexts), False, [len(b) for b in bodies])

        base = self.count_tokens(self.render(item, [], options))
        sep = len(self._body_tokens(["\n\n"])[0]) if blocks else 0
        header = len(self._body_tokens([self.context_header + "\n"])[0])
        room = budget - base - header
        costs = [len(ids) + sep for ids in self._body_tokens(blocks)]
        kept: list[str] = []
        kept_chars: list[int] = []
        for i, cost in enumerate(costs):
            if cost <= room:
                kept.append(blocks[i])
                kept_chars.append(len(bodies[i]))
                room -= cost
                continue
            head_cost = len(self._body_tokens([self.passage_block(i + 1, contexts[i], "")])[0]) + sep
            if room - head_cost >= MIN_PARTIAL_TOKENS:
                cut = self._cut_to_tokens(bodies[i], room - head_cost)
                kept.append(self.passage_block(i + 1, contexts[i], cut))
                kept_chars.append(len(cut))
            break
        while True:
            text = self.render(item, kept, options)
            n = self.count_tokens(text)
            if n <= budget or not kept:
                break
            kept.pop()
            kept_chars.pop()
        if n > budget:
            log.warning("item %s: prompt has %d tokens without passages, over prompt.max_prompt_tokens=%d", item.id, n, budget)
        return Prompt(text, n, len(kept), len(contexts), True, kept_chars)

    def passage_texts(self, contexts: Sequence[Any], prompt: Prompt) -> list[str]:
        """The passage texts exactly as far as ``prompt`` shows them (capped, and cut to the token budget)."""
        return [self._cap(_field(c, "text"))[:n] for c, n in zip(contexts[: prompt.contexts_used], prompt.context_chars, strict=False)]

    def build(self, item: QAItem, contexts: Sequence[Any] | None = None) -> str:
        return self.build_prompt(item, contexts).text

    def build_training_pair(self, item: QAItem, contexts: Sequence[Any] | None, answer: str) -> tuple[str, str]:
        """``(prompt, answer + eos)``; the prompt ends on a token boundary (newline), so its tokens are a prefix of
        the tokens of ``prompt + answer`` and the trainer can mask exactly the prompt."""
        prompt = self.build(item, contexts)
        eos = getattr(self.tokenizer, "eos_token", None) or ""
        return prompt, answer.strip() + eos

"""Config for the two-stage LoRA trainer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from krqa.configbase import Section
from krqa.training.rlconfig import DpoConfig, GrpoConfig


class ExternalSet(Section):
    kind: Literal["nikl", "click", "squad", "kmmlu", "koalpaca", "tydiqa", "etri_mrc"] = Field(description="Converter: NIKL-format JSON, CLIcK directory/file, SQuAD/KorQuAD JSON, KMMLU CSV file/directory, KoAlpaca JSON/JSONL, TyDi QA GoldP JSON (Korean questions), ETRI MRC JSON (SQuAD format). See README, external sets.")
    path: str = Field(description="File or directory.")
    limit: int | None = Field(None, ge=1, description="Use at most this many items (seeded sample).")
    ratio: float | None = Field(None, gt=0, description="Mixing ratio: use this many items per NIKL train item (seeded sample; all when the set is smaller); with limit, the smaller count wins.")
    use_context: bool = Field(True, description="Show the item's own passage (CLIcK paragraph, SQuAD context paragraph) in its stage-1 prompt.")


class LoraConfig(Section):
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha.")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[str] | Literal["all-linear"] = Field("all-linear", description="Module names to adapt, or 'all-linear' (lm_head excluded).")
    modules_to_save: list[str] = Field(default_factory=list, description="Extra fully-trained modules; empty keeps the adapter loadable by vLLM.")


class RaftConfig(Section):
    p_keep: float = Field(0.8, ge=0, le=1, description="Probability that an example keeps its retrieved contexts unchanged.")
    replace_fraction: float = Field(0.5, ge=0, le=1, description="Share of contexts replaced by distractors in the other examples.")
    min_contexts: int = Field(1, ge=0, description="Fewest contexts shown.")
    max_contexts: int = Field(5, ge=1, description="Most contexts shown (and retrieved).")
    shuffle: bool = Field(True, description="Shuffle context order.")


class StageConfig(Section):
    epochs: float = Field(3.0, gt=0, description="Epochs over the stage's data.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: run all epochs).")


class TrainConfig(Section):
    output_dir: str = Field("runs/latest", description="Run directory (config, adapters, metrics, loss curve).")
    train_file: str = Field("corpus/sample_qa.json", description="NIKL-format training set.")
    dev_file: str | None = Field(None, description="NIKL-format dev set for per-epoch evaluation and early stopping.")
    max_dev_items: int | None = Field(None, ge=1, description="SFT: evaluate on the first N dev questions of each type only (None: all); each evaluation is a forward pass over every dev example, which on a CPU can cost as much as the training steps.")
    external: list[ExternalSet] = Field(default_factory=list, description="Extra stage-1 sets converted to the NIKL schema.")
    short_answer_alternatives: Literal["first", "each"] = Field("first", description="단답형 '#' alternatives: train on the first, or one item per alternative.")
    lora: LoraConfig = Field(default_factory=LoraConfig, description="Adapter settings.")
    qlora: bool = Field(False, description="Load the base model in 4-bit (bitsandbytes; GPU only).")
    stage1: StageConfig = Field(default_factory=StageConfig, description="Task/knowledge SFT without contexts.")
    stage2: StageConfig = Field(default_factory=StageConfig, description="Retrieval-grounded SFT.")
    stage2_init: Literal["continue", "merge"] = Field("continue", description="Stage 2 continues the stage-1 adapter, or merges it and adds a new one.")
    dpo: DpoConfig = Field(default_factory=DpoConfig, description="Preference stage (krqa train --stage dpo): pairs of the model's own answers scored by the official metric.")
    grpo: GrpoConfig = Field(default_factory=GrpoConfig, description="Reward stage (krqa train --stage grpo): the official scorers and a format reward.")
    stage2_external: bool = Field(False, description="Also train stage 2 on the external sets (with retrieved contexts in place of their own passages); off: stage 2 uses the NIKL train questions only.")
    raft: RaftConfig = Field(default_factory=RaftConfig, description="Context mixing for stage 2.")
    batch_size: int = Field(4, ge=1, description="Per-device batch size.")
    grad_accum: int = Field(4, ge=1, description="Gradient accumulation steps.")
    max_seq_len: int = Field(2048, ge=32, description="Examples are truncated (prompt first, answer kept) to this length.")
    scheduler: Literal["cosine", "linear", "constant"] = Field("cosine", description="Learning-rate schedule.")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Warm-up share of the steps.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field("auto", description="'auto': bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory.")
    packing: bool = Field(False, description="Pack several examples into one sequence.")
    group_by_length: bool = Field(False, description="Batch examples of similar length together: less padding on sets that mix short and long answers.")
    early_stopping_patience: int = Field(2, ge=0, description="Epochs without dev-loss improvement before stopping (0 disables).")
    eval_generate: bool = Field(False, description="Also generate dev answers each epoch and score them.")
    logging_steps: int = Field(5, ge=1, description="Log train loss every N steps.")
    seed: int = Field(42, description="Seed for data order, RAFT mixing and initialisation.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept per stage for --resume (the best one is always kept).")
    eval_generate_max_items: int = Field(64, ge=1, description="Dev items answered and scored per epoch when eval_generate is on.")

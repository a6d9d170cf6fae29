"""Config for the preference (DPO) and reward (GRPO) stages that follow SFT."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from krqa.configbase import Section


class SamplingConfig(Section):
    """How the model's own answers are sampled (DPO pairs, the GRPO curriculum)."""

    samples: int = Field(4, ge=1, le=64, description="Sampled answers per question.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling.")
    seed: int = Field(0, description="Seed of the first sample; sample k uses seed + k.")


class DpoConfig(Section):
    init: Literal["auto", "stage1", "stage2"] = Field("auto", description="Adapter DPO starts from (and whose answers are sampled): 'auto' takes stage 2 when the run has it, else stage 1.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="Sampling of the answers the pairs are built from.")
    chosen: Literal["gold", "best"] = Field("gold", description="Chosen answer: the gold answer, or the best-scoring sample when it scores at least as well as gold would (1.0 for 선다형/단답형, desc_min_chosen for 서술형), else gold.")
    desc_min_chosen: float = Field(0.5, ge=0, le=1, description="서술형 with chosen=best: a sample needs this ROUGE-1 to replace the gold answer.")
    margin: float = Field(0.2, ge=0, le=1, description="A rejected answer scores at least this much below the chosen one (선다형/단답형: any wrong answer).")
    epochs: float = Field(1.0, gt=0, description="Epochs over the pairs.")
    learning_rate: float = Field(5e-6, gt=0, description="Peak learning rate.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: run all epochs).")
    beta: float = Field(0.1, gt=0, description="DPO beta: how far the policy may move from the reference (the starting adapter).")
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = Field("sigmoid", description="TRL DPO loss.")
    sft_weight: float = Field(0.0, ge=0, description="Add this times the chosen answer's NLL (answer tokens only, TRL's 'sft' loss) to the DPO loss; 0: pure DPO.")


class CurriculumConfig(Section):
    samples: int = Field(8, ge=1, le=64, description="Answers sampled per question to judge its difficulty.")
    drop_always_right: bool = Field(True, description="Drop questions every sample gets right (no learning signal: all rewards equal).")
    drop_always_wrong: bool = Field(True, description="Drop questions no sample gets right.")
    right_at: float = Field(1.0, ge=0, le=1, description="A sample is right at or above this official score (서술형 ROUGE-1 rarely reaches 1, so 서술형 items are seldom dropped as always right).")
    wrong_at: float = Field(0.0, ge=0, le=1, description="A sample is wrong at or below this official score.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the difficulty samples.")
    seed: int = Field(0, description="Seed of the first difficulty sample.")


class GrpoConfig(Section):
    init: Literal["auto", "stage1", "stage2"] = Field("auto", description="Adapter GRPO continues: 'auto' takes stage 2 when the run has it, else stage 1.")
    num_generations: int = Field(4, ge=2, description="Completions per prompt (the group whose rewards are normalised).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the completions.")
    reward_weights: dict[str, float] = Field(default_factory=lambda: {"official": 1.0, "format": 0.2}, description="Weight of each reward: 'official' (the type's official score) and 'format'.")
    beta: float = Field(0.0, ge=0, description="KL penalty against the starting adapter (0: none, no reference model kept).")
    epochs: float = Field(1.0, gt=0, description="Epochs over the prompts.")
    learning_rate: float = Field(1e-6, gt=0, description="Peak learning rate.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: run all epochs).")
    use_vllm: Literal["auto", "yes", "no"] = Field("auto", description="Generate completions with vLLM (colocated) when it is installed and a GPU is present ('auto'), always, or never (transformers).")
    curriculum: CurriculumConfig | None = Field(None, description="Difficulty curriculum: sample each question first and drop the ones always/never answered right; None: train on all.")
    max_eval_items: int = Field(32, ge=1, description="Dev questions whose rewards are computed at each evaluation.")

"""The two-stage LoRA trainer (stage 1 SFT, stage 2 retrieval-grounded SFT)."""

"""Competition data, prompts, answer post-processing and the official metrics."""

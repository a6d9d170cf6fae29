"""Model loading, generators (transformers, vLLM) and competition predictions."""

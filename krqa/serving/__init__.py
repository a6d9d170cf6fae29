"""The FastAPI service (POST /answer, /search) with micro-batched generation."""

from __future__ import annotations

from pathlib import Path

from krqa.config import load_config
from krqa.generation.factory import make_generator


def test_desc_min_new_tokens_forces_longer_descriptive_answers(repo: Path) -> None:
    sets = ["generation.max_new_tokens.서술형=24", "generation.repetition_penalty=1.0"]
    short = make_generator((c := load_config(repo / "configs" / "tiny-test.yaml", sets)).model, c.generation)
    prompts = ["질문: 설날의 풍습을 서술하세요.\n답변:"]
    free = short.generate_timed(prompts, ["서술형"])[0]
    forced = make_generator((c := load_config(repo / "configs" / "tiny-test.yaml", sets + ["generation.desc_min_new_tokens=20"])).model, c.generation)
    held = forced.generate_timed(prompts, ["서술형"])[0]
    assert forced.min_new_tokens("서술형") == 20 and forced.min_new_tokens("선다형") == 0
    assert held.new_tokens >= 20
    assert held.new_tokens >= free.new_tokens

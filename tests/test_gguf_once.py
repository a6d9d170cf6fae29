"""The demo LM's conversion parses its GGUF once, though transformers opens the file three times."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")


def _write_gguf(path: Path) -> Path:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_one_reader_per_file_inside_the_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from krqa.model_location import gguf_parsed_once

    path = _write_gguf(tmp_path / "m.gguf")
    parses = []
    original = gguf.GGUFReader

    class Counting(original):  # type: ignore[misc,valid-type]
        def __init__(self, *args, **kwargs) -> None:
            parses.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", Counting)
    with gguf_parsed_once():
        from gguf import GGUFReader  # imported at call time, as transformers does

        first, second = GGUFReader(str(path)), GGUFReader(tmp_path / "." / "m.gguf")
        assert first is second and len(parses) == 1
        assert first.tensors[0].name == "token_embd.weight"
    assert gguf.GGUFReader is Counting  # restored
    assert gguf.GGUFReader(str(path)) is not first and len(parses) == 2

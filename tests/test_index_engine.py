"""Choosing the build engine: Ray stays optional, and a wrong engine name is bad usage."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from krqa.cli import app
from krqa.errors import InputError


def test_ray_engine_without_ray_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from krqa.index.ray_build import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the dist extra looks like
    with pytest.raises(InputError, match=r"--engine ray needs Ray Data: pip install 'krqa\[dist\]'"):
        import_ray()


def test_unknown_engine_exits_2() -> None:
    import subprocess

    result = subprocess.run([sys.executable, "-m", "krqa", "build-index", "--engine", "spark"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--engine 'spark': expected 'local' or 'ray'" in result.stderr


def test_workers_option_is_documented() -> None:
    out = CliRunner().invoke(app, ["build-index", "--help"], terminal_width=200).output
    assert "--workers" in out and "--engine" in out and "--ray-address" in out


def test_local_engine_does_not_import_ray() -> None:
    import subprocess

    code = "import sys, krqa.index.build, krqa.corpus.pipeline, krqa.cli.index; assert 'ray' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0

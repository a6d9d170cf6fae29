from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from krqa.cli import app


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "krqa", *args], capture_output=True, text=True, timeout=120)


DESIGN_COMMANDS = ("build-index", "search", "eval-retrieval", "train", "predict", "evaluate", "serve", "demo", "data", "config")


def test_help_lists_design_commands() -> None:
    out = CliRunner().invoke(app, ["--help"]).output
    for name in DESIGN_COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", DESIGN_COMMANDS)
def test_design_command_is_registered(name: str) -> None:
    """The root help mentions every name in its prose too; only running the command shows it is registered
    (an unregistered one exits 2 with "No such command")."""
    res = CliRunner().invoke(app, [name, "--help"])
    assert res.exit_code == 0, res.output
    assert f"Usage: krqa {name} " in res.output


def test_data_stats_json(repo: Path) -> None:
    proc = _run("data", "stats", str(repo / "corpus" / "sample_qa.json"), "--json")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert stats["items"] == 32 and stats["by_type"] == {"선다형": 13, "단답형": 12, "서술형": 7}


def test_data_stats_bad_file_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": "1", "input": {"category": "c", "domain": "d", "question_type": "OX", "topic_keyword": "k", "question": "q"}}]', encoding="utf-8")
    proc = _run("data", "stats", str(bad))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.json: item '1': input.question_type" in lines[0]


def test_config_show_roundtrip(repo: Path) -> None:
    proc = _run("config", "show", "--config", str(repo / "configs" / "kanana-8b.yaml"), "--set", "retrieval.top_k=11", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["retrieval"]["top_k"] == 11


def test_config_unknown_key_exit_2(repo: Path) -> None:
    proc = _run("config", "show", "--set", "serve.prot=1")
    assert proc.returncode == 2 and "serve.prot: unknown key" in proc.stderr


@pytest.mark.parametrize("flag", ["--nonexistent-flag"])
def test_bad_usage_exit_2(flag: str) -> None:
    assert _run("data", "stats", flag).returncode == 2

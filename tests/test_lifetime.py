"""A demo step's process ends with the demo, even when the demo is killed (SIGKILL skips the pool's shutdown)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")

# A stand-in for `krqa demo`: the demo's own step pool, one step that reports its pid through a FIFO and blocks.
SCRIPT = """
import os, sys, threading
from krqa.demo import _steps_pool

def step(fifo):
    with open(fifo, "w") as out:
        out.write(str(os.getpid()))
    threading.Event().wait()

if __name__ == "__main__":
    with _steps_pool(1) as pool:
        pool.submit(step, sys.argv[1])
        threading.Event().wait()
"""


def test_a_step_process_ends_when_the_demo_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "demo_like.py"
    script.write_text(SCRIPT, encoding="utf-8")
    fifo = tmp_path / "step.pid"
    os.mkfifo(fifo)
    parent = subprocess.Popen([sys.executable, str(script), str(fifo)])
    step = None
    try:
        with open(fifo, encoding="utf-8") as reader:  # blocks until the step has started
            step = psutil.Process(int(reader.read()))
        parent.kill()
        parent.wait()
        step.wait(timeout=120)  # returns as soon as the step process is gone; a step that outlives the demo fails here
    finally:
        parent.kill()
        if step is not None and step.is_running():
            step.kill()

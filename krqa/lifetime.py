"""A process krqa starts for one step of its work must not outlive the process that started it.

``krqa demo`` runs its steps in spawned pool processes. Killing the demo (SIGTERM from a supervisor, SIGKILL, a
closed terminal) ends the parent at once, without the pool's shutdown, and a step's process then keeps training or
answering on its own: found when a killed benchmark left a demo's training step holding a core and 3.5 GB for
eight minutes, slowing every measurement beside it.
"""

from __future__ import annotations

import os
import signal
import sys

from krqa.clib import libc

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> bool:
    """Have Linux send this process SIGTERM when its parent exits, and end it now if the parent is already gone
    (it may have died before the request). Returns whether the request was made (a no-op off Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    prctl = getattr(libc(), "prctl", None)
    if prctl is None or prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return False
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)
    return True

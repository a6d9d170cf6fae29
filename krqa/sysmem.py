"""Give freed tensor memory back to the operating system.

glibc serves large allocations from its heap once a few have been freed (its mmap threshold rises up to 32 MB),
and heap memory freed in the middle is kept by the process. PyTorch on the CPU allocates and frees many
activation-sized blocks per step, so a process's resident size ends up at its peak fragmentation rather than its
live tensors: a Gemma-3-270m LoRA step (batch 4 x 400 tokens) sat at 4.0 GB RSS, and at 1.6 GB with a fixed
64 KB threshold, at the same step time (measured on 2 cores). A fixed threshold makes every block above it an
mmap of its own, returned to the system when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 64 * 1024


def return_freed_memory() -> bool:
    """Fix glibc's mmap threshold (Linux only; a no-op elsewhere). Returns whether it was applied."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    log.debug("glibc mmap threshold fixed at %d bytes: %s", MMAP_THRESHOLD_BYTES, ok)
    return ok

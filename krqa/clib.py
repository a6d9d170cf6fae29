"""The C library, loaded once for the few system calls Python's standard library does not wrap
(``renameat2`` for atomic directory swaps, ``mallopt`` to return freed memory, ``prctl`` so that step processes
end with their parent)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def libc() -> ctypes.CDLL | None:
    """The process's C library with ``errno`` kept for ``ctypes.get_errno``; None where it cannot be found or
    loaded (the callers then fall back or do nothing)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None

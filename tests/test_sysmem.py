"""Freed blocks go back to the system once krqa fixes glibc's mmap threshold (what kept training RSS at its peak)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, sys
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "fixed":
    from krqa.sysmem import return_freed_memory
    assert return_freed_memory()
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
def touch(p, n):
    ctypes.memset(p, 1, n)
big = libc.malloc(8 << 20); touch(big, 8 << 20); libc.free(big)   # glibc now raises its mmap threshold to 8 MB
blocks = [libc.malloc(2 << 20) for _ in range(100)]
for b in blocks:
    touch(b, 2 << 20)
before = rss_mb()
for b in blocks[:-1]:                                               # the last block pins the top of the heap
    libc.free(b)
print(round(before - rss_mb()))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_freed_memory_returns_to_the_system() -> None:
    def released(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.strip())

    assert released("default") < 50  # 198 MB freed, kept by the process
    assert released("fixed") > 150   # the same 198 MB handed back

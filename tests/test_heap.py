"""mmnerd.heap.trim gives freed heap memory back: the dedup stage calls it between the
text join's phases so the driver's RSS follows what it holds, not its high-water mark."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

_CHILD = """
import numpy as np
from mmnerd.heap import trim
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
blocks = [np.ones(8192) for _ in range(4000)]  # 64 KiB each, below the mmap threshold
keep = blocks[-1]
del blocks
before = rss()
ok = trim()
print(before, rss(), ok)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is glibc's")  # fmt: skip
def test_trim_returns_freed_heap_blocks_to_the_os() -> None:
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()  # fmt: skip
    before, after, ok = int(out[0]), int(out[1]), out[2] == "True"
    assert ok and before - after > 150, (before, after)  # 250 MiB freed, most of it given back

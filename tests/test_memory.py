"""Stages hand freed memory back to the OS (pipeline.core.memory): holes a stage leaves in the heap
stop counting in the process's resident memory."""

from __future__ import annotations

import numpy as np
import pytest

from bench.procstat import rss_mb
from pipeline.core.memory import release_free_memory


def test_release_free_memory_returns_holes_in_the_heap():
    # 4,000 blocks of 64 KB (below glibc's mmap threshold: they live in the heap), every other
    # one freed: 128 MB of holes the allocator keeps without a trim.
    blocks = [np.ones(8192) for _ in range(4000)]
    del blocks[::2]
    before = rss_mb()
    if not release_free_memory():
        pytest.skip("this C library has no malloc_trim")
    after = rss_mb()
    assert before - after > 64, (before, after)
    assert sum(float(b[0]) for b in blocks) == 2000.0  # the live half is intact

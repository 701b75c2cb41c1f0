"""Handing freed memory back to the operating system between stages.

glibc's allocator keeps what a program frees for its own later use instead of returning it:
the heap of each thread's arena only shrinks from its top, and a long run leaves holes. A run
is a sequence of stages that each allocate and free hundreds of megabytes (a model's features,
a window's bands, a network's batches), in the main thread or in a task runner's worker
threads, each with an arena of its own. Measured on the 218-band case of docs/benchmarks.md, what the
finished stages left behind raised the process's resident memory by about 100 MB per stage,
and the peak of a later stage landed on top of it. ``malloc_trim`` releases the free pages of
every arena.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc (Linux)
    except (OSError, AttributeError):  # other C libraries: nothing to do
        return None


def release_free_memory() -> bool:
    """Return the allocator's free memory to the OS (glibc ``malloc_trim(0)``); False where the C
    library has no such call. Costs milliseconds; call it between large steps, not in loops."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True

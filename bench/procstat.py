"""Memory figures of the current process, for benchmark children.

``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is not the child's own peak on Linux: a process
started by ``fork`` + ``exec`` inherits the parent's high-water mark (the kernel carries it over
in the signal struct), so a child of a 500 MB parent reports at least 500 MB. ``VmHWM`` in
``/proc/self/status`` belongs to the address space made by ``exec`` and is the child's own.
"""

from __future__ import annotations

import resource
from pathlib import Path


def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (``VmHWM``; ``ru_maxrss`` where /proc is absent)."""
    v = _status_mb("VmHWM")
    return v if v is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    """Current resident memory of this process in MB (NaN where /proc is absent)."""
    v = _status_mb("VmRSS")
    return v if v is not None else float("nan")

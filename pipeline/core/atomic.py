"""Atomic file output: nothing half-written ever sits under its final name.

Every writer in the pipeline writes to a hidden temporary sibling and renames it
into place (``os.replace`` is atomic on one filesystem), so a crash or a kill
leaves either the previous file or none, never a truncated one that looks done.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.errors import OutOfSpaceError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; rename it to ``path`` on success.

    The temporary name keeps the suffix (``.name.tmp.tif``) so that drivers which pick the
    format from the extension still work. On an exception the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def json_safe(obj: Any) -> Any:
    """``obj`` as strict JSON values: non-finite floats -> None (undefined is null, never NaN),
    numpy scalars and arrays -> Python numbers and lists, tuples -> lists, paths -> str, keys -> str.

    The one place this is done: :func:`write_json` applies it to everything it writes.
    """
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    """Strict JSON (NaN and infinities become null; numpy values converted), written atomically."""
    return write_text(path, json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def free_bytes(path: str | Path) -> int | None:
    """Free space (bytes available to this user) of the file system holding ``path``; None if unknown."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def is_out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError, or a GDAL error whose text carries the C library's) means a full disk."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return "no space left" in text or "disk quota" in text


def out_of_space(path: str | Path, needed: int | None, what: str = "") -> OutOfSpaceError:
    """The one-line error for a write that found the disk full."""
    free = free_bytes(Path(path).parent)
    need = f"; it needs about {human_bytes(needed)}" if needed else ""
    have = f", {human_bytes(free)} free" if free is not None else ""
    return OutOfSpaceError(f"{path}: no space left on the device{f' writing {what}' if what else ''}{need}{have}")


def reserve_space(path: str | Path, nbytes: int, name: str | Path | None = None) -> None:
    """Allocate ``nbytes`` of disk blocks for the open-for-writing file ``path`` now.

    A memory-mapped file is created sparse; on a full disk the first store into an
    unallocated page kills the process with SIGBUS instead of raising. Reserving the
    blocks up front turns that into an :class:`OutOfSpaceError` before any data is written.
    ``name`` is the path the error names (the final name of a file written under a temporary one).
    """
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, int(nbytes))
    except OSError as e:
        if is_out_of_space(e):
            raise out_of_space(name or path, nbytes) from None
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # file systems without fallocate: nothing to reserve
            raise
    finally:
        os.close(fd)

"""Atomic file output: nothing half-written ever sits under its final name.

Every writer in the pipeline writes to a hidden temporary sibling and renames it
into place (``os.replace`` is atomic on one filesystem), so a crash or a kill
leaves either the previous file or none, never a truncated one that looks done.
A full disk (or quota) met on the way is one :class:`OutOfSpaceError` naming the
file and the space it needs (:func:`as_out_of_space`).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.errors import InputError, OutOfSpaceError

#: The bytes an output needs: known, computed on demand (only when the disk was found full:
#: e.g. the object serialised again into memory), or unknown.
Needed = int | Callable[[], int | None] | None


@contextmanager
def atomic_path(path: str | Path, needed: Needed = None, what: str = "") -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; rename it to ``path`` on success.

    The temporary name keeps the suffix (``.name.tmp.tif``) so that drivers which pick the
    format from the extension still work. On an exception the temporary file is removed; a full
    disk becomes an :class:`OutOfSpaceError` naming ``path`` and ``needed`` (see :func:`as_out_of_space`).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)
        yield tmp
        os.replace(tmp, path)
    except InputError:
        raise
    except Exception as e:
        err = as_out_of_space(e, path, needed, what, partial=tmp)
        if err is None:
            raise
        raise err from e
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes, what: str = "") -> Path:
    with atomic_path(path, len(data), what) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str, what: str = "") -> Path:
    return write_bytes(path, text.encode("utf-8"), what)


def write_figure(path: str | Path, fig: object, **savefig: object) -> Path:
    """A matplotlib figure saved to ``path`` (format from its suffix), atomically. Rendered in
    memory first: a figure is small, and its size is then known if the disk is full."""
    buf = io.BytesIO()
    fig.savefig(buf, **{"format": Path(path).suffix.lstrip("."), **savefig})  # type: ignore[attr-defined]
    return write_bytes(path, buf.getvalue())


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
    """Whether ``exc`` (an OSError, or a GDAL error whose text carries the C library's) or an
    exception it was raised from means a full disk."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(e).lower()
        if "no space left" in text or "disk quota" in text or "disk is full" in text:
            return True
        e = e.__cause__ or e.__context__
    return False


def disk_full(path: str | Path, needed: int | None) -> bool:
    """Whether a failed write to ``path`` is best explained by a full disk: less free than it
    needs (1 MiB when unknown). For libraries that report a full disk without its errno (GDAL's
    GeoPackage and TIFF writers: "Failed to commit transaction", or only in their log)."""
    free = free_bytes(Path(path).parent)
    return free is not None and free < max(needed or 0, 1 << 20)


def out_of_space(path: str | Path, needed: int | None, what: str = "", at_least: bool = False) -> OutOfSpaceError:
    """The one-line error for a write that found the disk full (``at_least``: ``needed`` is only
    what was written before the disk filled)."""
    free = free_bytes(Path(path).parent)
    need = f"; it needs {'more than' if at_least else 'about'} {human_bytes(needed)}" if needed else ""
    have = f", {human_bytes(free)} free" if free is not None else ""
    return OutOfSpaceError(f"{path}: no space left on the device{f' writing {what}' if what else ''}{need}{have}")


def as_out_of_space(
    exc: Exception, path: str | Path, needed: Needed = None, what: str = "", partial: str | Path | None = None
) -> OutOfSpaceError | None:
    """``exc``, raised while writing ``path``, as the one-line error of a full disk, or None when
    it is something else (a bug keeps its traceback).

    A full disk is ENOSPC or EDQUOT in ``exc`` or its causes, or an I/O error (``OSError``, or a
    library's ``RuntimeError`` such as pyogrio's) while the disk holds less than ``path`` needs.
    ``needed``: the output's bytes, or a function computing them (called only here); when
    unknown, the bytes of ``partial`` (the unfinished file) are named as a lower bound.
    """
    full = is_out_of_space(exc)
    if not full and (not isinstance(exc, (OSError, RuntimeError)) or getattr(exc, "errno", None) is not None):
        return None  # not an I/O error, or the C library's own reason, which is not a full disk
    if callable(needed):
        try:
            needed = needed()
        except Exception:  # noqa: BLE001 - the size is a courtesy: the error is the full disk
            needed = None
    if not (full or disk_full(path, needed)):
        return None
    if needed is None and partial is not None and os.path.exists(partial):
        return out_of_space(path, os.path.getsize(partial) or None, what, at_least=True)
    return out_of_space(path, needed, what)


def reserve_space(
    path: str | Path, nbytes: int, name: str | Path | None = None, needed: int | None = None, what: str = ""
) -> None:
    """Allocate ``nbytes`` of disk blocks for the open-for-writing file ``path`` now.

    A memory-mapped file is created sparse; on a full disk the first store into an
    unallocated page kills the process with SIGBUS instead of raising. Reserving the
    blocks up front turns that into an :class:`OutOfSpaceError` before any data is written.
    ``name`` is the path the error names (the final name of a file written under a temporary one),
    ``needed`` the space it names (default ``nbytes``: more when this file is one step of an output).
    """
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, int(nbytes))
    except OSError as e:
        if is_out_of_space(e):
            raise out_of_space(name or path, needed or nbytes, what) from None
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # file systems without fallocate: nothing to reserve
            raise
    finally:
        os.close(fd)


class LogFileHandler(logging.FileHandler):
    """A log file (``run.log``) that stops writing, without a word, when its disk is full.

    The standard handler prints a traceback to stderr for every record it cannot write; the
    error that stops the run is reported once on the console, which still gets every record.
    """

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        if is_out_of_space(sys.exc_info()[1] or Exception()):
            return
        super().handleError(record)

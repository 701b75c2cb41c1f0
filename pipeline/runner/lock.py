"""One process at a time per run directory.

Two processes writing one run directory (a ``--resume`` of a run that is still running, two
runs given the same ``--run-id``) would interleave their stage records and overwrite each
other's outputs. :func:`lock_run_dir` takes an exclusive ``flock`` on ``<run dir>/.lock`` for
as long as the run goes on; a second process is refused in one line naming the holder.

The lock belongs to the process, like the files it writes: the kernel drops it when the process
ends, however it ends (``kill -9`` included), so a crashed run never leaves a stale lock behind.
Within one process it is re-entrant (the CLI takes it, then the Prefect flow it starts reopens
the same directory), which takes a process-wide table of the locks held, on purpose.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from pipeline.core.errors import InputError

LOCK_NAME = ".lock"

_table_lock = threading.Lock()
_held: dict[str, list[int]] = {}  # resolved run dir -> [file descriptor, times taken in this process]


class RunDirBusyError(InputError):
    """Another process is running in this run directory."""


def _holder(path: Path) -> str:
    """Who holds the lock, as the holder wrote it into the lock file ("pid 123 on host, since ...")."""
    try:
        info = json.loads(path.read_text())
        return f"pid {info['pid']} on {info['host']}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def lock_run_dir(run_dir: Path, what: str = "") -> Callable[[], None]:
    """Take the run directory's lock (or take it once more in this process); returns the function
    that gives it back. A :class:`RunDirBusyError` naming ``what`` (e.g. ``--resume RUN``) and the
    holding process when another process has it."""
    key = str(Path(run_dir).resolve())
    path = Path(key) / LOCK_NAME
    with _table_lock:
        if key in _held:
            _held[key][1] += 1
            return _releaser(key)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirBusyError(
                f"{what + ': ' if what else ''}{run_dir} is in use by {_holder(path)}; "
                "wait until that run ends (or stop it), then try again"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        stamp = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(stamp) + "\n").encode(), 0)
        _held[key] = [fd, 1]
    return _releaser(key)


def _releaser(key: str) -> Callable[[], None]:
    done = threading.Event()

    def release() -> None:
        if done.is_set():  # a second call gives back nothing
            return
        done.set()
        with _table_lock:
            entry = _held.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                os.close(entry[0])  # closing the descriptor drops the flock

    return release

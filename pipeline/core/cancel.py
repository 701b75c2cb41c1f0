"""Stopping a run on Ctrl-C or SIGTERM within seconds.

Python delivers a signal to the main thread only, but a run's long work (training
epochs, mapping windows) often runs in worker threads of the flow's task runner,
which would go on for minutes while the main thread waits for them. So the first
SIGINT or SIGTERM sets a process-wide flag, and the long loops call
:func:`check_cancelled` once per batch or window, which raises :class:`Interrupted`
in whichever thread they run. A second signal ends the process at once.

The flag is the one piece of process-wide state in the library on purpose: a signal
is process-wide too. Stages write their outputs atomically and record themselves only
when complete, so an interrupted run keeps every finished stage and ``--resume``
continues from there.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

_cancelled = threading.Event()
_signum: list[int] = []  # the first signal received
_handled: list[int] = []  # signals this module's handler received (Prefect's SIGTERM handler may see one first)


class Interrupted(KeyboardInterrupt):
    """The run was asked to stop (Ctrl-C or SIGTERM). A ``KeyboardInterrupt``, so that it
    passes through every ``except Exception`` and Prefect treats it as a crash, not a
    failure to retry."""

    def __init__(self, signum: int = signal.SIGINT, run_id: str | None = None):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)
        self.run_id = run_id

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


def request_cancel(signum: int = signal.SIGINT) -> None:
    """Ask every long loop of this process to stop at its next check."""
    if not _signum:
        _signum.append(int(signum))
    _cancelled.set()


def cancel_requested() -> bool:
    return _cancelled.is_set()


def cancel_signal() -> int:
    """The signal that asked for the stop (SIGINT if none did)."""
    return _signum[0] if _signum else int(signal.SIGINT)


def check_cancelled() -> None:
    """Raise :class:`Interrupted` if a stop was requested. Cheap: call it once per batch or window."""
    if _cancelled.is_set():
        raise Interrupted(cancel_signal())


def reset() -> None:
    """Forget a past request (for a process that runs the CLI several times, e.g. tests)."""
    _cancelled.clear()
    _signum.clear()
    _handled.clear()


def _handler(signum: int, frame: Any) -> None:
    _handled.append(signum)
    if len(_handled) > 1:
        # A second Ctrl-C: the user does not want to wait for the clean stop.
        sys.stderr.write("landcover: interrupted again; stopping now\n")
        sys.stderr.flush()
        os._exit(128 + signum)
    request_cancel(signum)
    raise Interrupted(signum)


def install_signal_handlers() -> Callable[[], None]:
    """Route SIGINT and SIGTERM to :class:`Interrupted` (main thread only); returns a function
    that restores the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for s, h in old.items():
            signal.signal(s, h)

    return restore

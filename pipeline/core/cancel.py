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
import time
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


#: Seconds the main thread has to react to a stop request before the process stops at once.
STUCK_AFTER = 5.0


def install_signal_handlers() -> Callable[[], None]:
    """Route SIGINT and SIGTERM to :class:`Interrupted` (main thread only), with a watchdog for a
    main thread stuck in native code; returns a function that restores the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
    stop_watchdog = _start_watchdog()

    def restore() -> None:
        stop_watchdog()
        for s, h in old.items():
            signal.signal(s, h)

    return restore


def _start_watchdog() -> Callable[[], None]:
    """Watch for SIGINT/SIGTERM outside the main thread.

    Python runs a signal handler in the main thread between two bytecodes only: a main thread
    blocked in native code (a GDAL read of a network source that never answers, a long C fit)
    ignores Ctrl-C, a second Ctrl-C and SIGTERM alike. The interpreter's C-level handler also
    writes each signal's number to the "wakeup fd" at once, so a thread reading it sees every
    signal. When the main thread has not moved at all (same frame, same instruction) for
    :data:`STUCK_AFTER` seconds after a stop request, its handler cannot run, and on a second
    stop request, the process ends at once with the shell's exit code: finished stages are
    kept (every output is written atomically) and Prefect's temporary server dies with it
    (``flows.ephemeral``). A main thread that did react is left to stop cleanly. Returns the
    function that stops the watchdog.
    """
    import socket

    try:
        rsock, wsock = socket.socketpair()
        wsock.setblocking(False)
        previous = signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
    except (OSError, ValueError):  # not the main thread, or no socket pair: no watchdog
        return lambda: None
    done = threading.Event()
    main_id = threading.main_thread().ident

    def position() -> tuple[int, int] | None:
        frame = sys._current_frames().get(main_id or -1)
        return None if frame is None else (id(frame), frame.f_lasti)

    def watch() -> None:
        first: tuple[int, float, tuple[int, int] | None] | None = None  # signal, when, main's position
        while not done.is_set():
            try:
                # inside the try: stop() may close the socket between two turns of this loop
                rsock.settimeout(0.5 if first is not None and first[1] < float("inf") else None)
                data: bytes | None = rsock.recv(64)
            except TimeoutError:
                data = None
            except OSError:
                return
            if data == b"" or done.is_set():  # closed: the handlers were restored
                return
            for signum in data or b"":
                if signum not in (signal.SIGINT, signal.SIGTERM):
                    continue
                if first is None:
                    first = (signum, time.monotonic(), position())
                else:
                    _stop_now(signum, "interrupted again; stopping now")
            if first is not None:
                signum, since, where = first
                if position() != where:
                    first = (signum, float("inf"), where)  # the main thread reacts: let it stop cleanly
                elif time.monotonic() - since > STUCK_AFTER:
                    _stop_now(signum, "interrupted; stopping now (blocked in a native call, e.g. a network read)")

    thread = threading.Thread(target=watch, name="landcover-signal-watchdog", daemon=True)
    thread.start()

    def stop() -> None:
        done.set()
        try:
            signal.set_wakeup_fd(previous)
        except (OSError, ValueError):
            pass
        wsock.close()
        rsock.close()

    return stop


def _stop_now(signum: int, why: str) -> None:
    sys.stderr.write(f"landcover: {why}\n")
    sys.stderr.flush()
    os._exit(128 + int(signum))

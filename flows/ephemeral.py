"""Prefect's temporary (ephemeral) API server, tied to the life of this process.

Without ``PREFECT_API_URL`` Prefect starts a temporary server as a child process the first
time a flow needs an API. As Prefect starts it, that child is in the terminal's process
group, so Ctrl-C kills the server at once while the run still needs it (the run then ends
minutes later with connection tracebacks), and a ``kill -9`` of the CLI leaves it running.

:func:`start_tied_server` starts the same server first, from the main thread, with two
differences: it runs in its own session (a terminal's Ctrl-C reaches only the CLI, which
stops cleanly and then stops the server) and it asks the kernel to send it SIGTERM when
its parent dies (Linux ``PR_SET_PDEATHSIG``), so it never outlives the CLI. Prefect keeps
one server instance per port, so its own later start-up finds this one running and uses it.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import sys
from typing import Any

PR_SET_PDEATHSIG = 1


def _death_signal_setter(parent: int) -> Any:
    """A preexec_fn for the server: SIGTERM when the parent dies (and exit at once if it died
    between fork and exec). libc is looked up here, in the parent: between fork and exec only
    plain calls are safe. None where there is no prctl (not Linux): the session is all we have."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def start_tied_server() -> str | None:
    """Start Prefect's temporary server as a child that cannot outlive this process.

    Returns its API URL, or None when there is nothing to do (``PREFECT_API_URL`` set,
    ephemeral mode off, or a server already started in this process).
    """
    from prefect.server.api import server as prefect_server
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    srv = prefect_server.SubprocessASGIServer()
    if srv.running:
        return srv.api_url
    preexec = _death_signal_setter(os.getpid())
    real_popen = subprocess.Popen

    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen:
        kwargs.setdefault("start_new_session", True)
        if preexec is not None:
            kwargs.setdefault("preexec_fn", preexec)
        return real_popen(*args, **kwargs)

    # Prefect builds the server's command line and environment; only how the child is
    # spawned changes, and only for this call (made from the main thread at start-up).
    # mypy refuses any assignment to a class name (misc) and a function in place of the class
    # (assignment); Prefect only calls it, with Popen's arguments, so the patch is sound.
    prefect_server.subprocess.Popen = popen  # type: ignore[misc, assignment]
    try:
        srv.start()
    finally:
        prefect_server.subprocess.Popen = real_popen  # type: ignore[misc]
    # Exit hooks run last-registered first: this one runs after Prefect's log and event workers
    # have flushed (they register later) and before Prefect's own stop, which waits up to 5 s.
    atexit.register(_stop_at_exit)
    return srv.api_url


def _stop_at_exit() -> None:
    from pipeline.core.cancel import cancel_requested

    stop_server(timeout=1.0 if cancel_requested() else 5.0)


def stop_server(timeout: float = 2.0) -> None:
    """Stop this process's temporary server: SIGTERM, then SIGKILL after ``timeout`` seconds.
    (SQLite, the server's database, survives a kill: its commits are atomic.)"""
    from prefect.server.api import server as prefect_server

    srv = prefect_server.SubprocessASGIServer._instances.get(None)
    proc = getattr(srv, "server_process", None)
    if srv is None or proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    srv.server_process = None  # Prefect's own exit hook then has nothing left to stop


def server_pid() -> int | None:
    """Process id of this process's temporary server, if one runs."""
    from prefect.server.api import server as prefect_server

    srv = prefect_server.SubprocessASGIServer._instances.get(None)
    proc = getattr(srv, "server_process", None)
    return proc.pid if proc is not None and proc.poll() is None else None


if __name__ == "__main__":  # pragma: no cover - manual check: prints the server's pid
    print(start_tied_server(), server_pid(), file=sys.stderr)

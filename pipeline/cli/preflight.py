"""Pre-flight checks of the services a run will talk to, before anything is written.

An unreachable Prefect API or Dask scheduler otherwise shows up deep inside Prefect's
client or Dask's comm layer, as a long traceback after its own retries (tens of
seconds), or as a hang when the port accepts connections but never answers. Here each is
one TCP connection (for a Dask scheduler, also Dask's handshake) with a short timeout, and a failure is an
:class:`~pipeline.core.errors.InputError` naming the setting, so the CLI prints one line and
exits with code 2 before a run directory exists.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

from pipeline.core.errors import InputError

#: Seconds to wait for a TCP connection to a service.
CONNECT_TIMEOUT = 3.0
_DEFAULT_PORTS = {"http": 80, "https": 443, "tcp": 8786, "tls": 8786}


def _host_port(address: str, what: str) -> tuple[str, int]:
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise InputError(f"{what}: {address!r} is not an address of the form scheme://host:port")
    return parts.hostname, int(port)


def check_reachable(address: str, what: str, hint: str = "", timeout: float = CONNECT_TIMEOUT) -> None:
    """Open (and close) one TCP connection to ``address``; an :class:`InputError` naming ``what`` if it fails."""
    host, port = _host_port(address, what)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__).lower()
        raise InputError(f"{what}: cannot reach {host}:{port} ({reason}){hint}") from None


#: Address schemes of a Dask scheduler (``distributed``'s comm backends reachable over a network).
DASK_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss")


def check_dask_scheduler(address: str, what: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """``address`` is a Dask scheduler that answers: a known scheme, a TCP connection within
    ``timeout`` seconds and, for ``tcp://``, Dask's handshake within ``timeout`` seconds too (a
    port that accepts connections but never answers would otherwise hang the client). An
    :class:`InputError` naming ``what`` otherwise."""
    scheme = address.split("://", 1)[0].lower() if "://" in address else "tcp"
    if scheme not in DASK_SCHEMES:
        raise InputError(
            f"{what}: {scheme}:// is not a Dask scheduler address; give tcp://HOST:PORT "
            f"(or {', '.join(s + '://' for s in DASK_SCHEMES[1:])})"
        )
    hint = "; start the scheduler (dask scheduler) or check the address"
    check_reachable(address, what, hint, timeout)
    if scheme != "tcp":  # tls:// and the others need their security settings for a handshake
        return
    import asyncio

    try:
        from distributed.comm import connect
    except ImportError as e:
        raise InputError(f"{what}: needs the distributed package ({e})") from None

    async def hello() -> None:
        comm = await connect(address, timeout=timeout)
        await comm.close()

    host, port = _host_port(address, what)
    try:
        asyncio.run(asyncio.wait_for(hello(), timeout))
    except (TimeoutError, OSError) as e:
        why = "did not answer" if isinstance(e, TimeoutError) else f"failed ({e})"
        raise InputError(
            f"{what}: {host}:{port} accepts connections but {why} as a Dask scheduler within {timeout:g} s; "
            "check the address and port (the scheduler's, default 8786)"
        ) from None


def prefect_api_url() -> str | None:
    """The Prefect API URL a flow run would use (environment or active profile); None for ephemeral mode."""
    url = os.environ.get("PREFECT_API_URL")
    if url is not None:
        return url or None
    try:
        from prefect.settings import PREFECT_API_URL
    except ImportError:
        return None
    return str(PREFECT_API_URL.value() or "") or None


#: ``--engine`` choices of ``landcover run``/``demo``.
ENGINES = ("auto", "prefect", "local")


def choose_engine(engine: str, dask_address: str | None, api_url: str | None) -> tuple[str, str]:
    """``(engine, why)``: the engine a run uses, ``"prefect"`` or ``"local"``, and why.

    ``auto`` takes Prefect only when the run would report to a Prefect API (``api_url``: what
    :func:`prefect_api_url` finds in ``PREFECT_API_URL`` or the active Prefect profile) or runs on a Dask cluster (``--dask`` goes through
    prefect-dask). Otherwise it runs in process: with no API, Prefect would start a temporary
    server for the run, and on a small run that start-up and the per-flow-run overhead cost more
    than the run's own work (see docs/benchmarks.md, "Engines"), while the stages, outputs and
    stage store are the same.
    """
    if engine not in ENGINES:
        raise InputError(f"--engine: {engine!r} is not one of {', '.join(ENGINES)}")
    if engine != "auto":
        return engine, f"--engine {engine}"
    if dask_address:
        return "prefect", "--dask runs through Prefect"
    if api_url:
        return "prefect", f"Prefect API configured ({api_url})"
    return "local", "no Prefect API configured; --engine prefect for a Prefect flow run"


def check_run_services(engine: str, dask_address: str | None) -> None:
    """Everything a ``landcover run`` with this engine will connect to is reachable (else InputError)."""
    if engine == "local":
        if dask_address:
            raise InputError("--dask: runs on a Dask cluster through Prefect; use it with --engine prefect")
        return
    if dask_address:
        check_dask_scheduler(dask_address, f"--dask {dask_address}")
    url = prefect_api_url()
    if url:
        check_reachable(
            url,
            f"PREFECT_API_URL={url}",
            "; start the server (prefect server start), unset PREFECT_API_URL for a temporary "
            "local server, or use --engine local",
        )

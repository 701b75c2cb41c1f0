"""What the Prefect flows share: task runners, retry rule, run.log in workers, API settings.

:mod:`flows.pipeline` (``landcover run``) and :mod:`flows.serve` (``landcover serve``)
both import this module and never each other.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from pipeline.core.atomic import LogFileHandler, is_out_of_space
from pipeline.core.cancel import Interrupted, cancel_requested, cancel_signal, request_cancel
from pipeline.core.errors import InputError

if TYPE_CHECKING:
    from prefect import Task
    from prefect.client.schemas.objects import State, TaskRun

log = logging.getLogger(__name__)
# The loggers whose INFO records belong in run.log (Prefect's logging setup leaves the root at WARNING).
RUN_LOGGERS = ("pipeline", "flows")

IO_RETRIES = 2
IO_RETRY_DELAY = 2.0


def not_input_error(task_: Task, task_run: TaskRun, state: State) -> bool:
    """retry_condition_fn: retry transient failures (I/O), never bad input nor a model's own error
    (a fit that raised will raise again: retrying would only triple its cost) nor a full disk."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as e:  # noqa: BLE001 - the result may itself fail to load
        exc = e
    return isinstance(exc, OSError) and not isinstance(exc, InputError) and not is_out_of_space(exc)


# ----------------------------------------------------------------------------- run.log
@dataclass
class _RunLogFile:
    """A run.log handler this process added, and how many open :func:`run_log` contexts use it."""

    handler: logging.FileHandler
    users: int = 0


_log_lock = threading.Lock()
_log_users: dict[str, _RunLogFile] = {}  # by absolute path of run.log


def _has_file_handler(path: str) -> bool:
    return any(
        isinstance(h, logging.FileHandler) and os.path.abspath(h.baseFilename) == path
        for h in logging.getLogger().handlers
    )


@contextmanager
def run_log(run_dir: str | Path) -> Iterator[None]:
    """Send ``landcover`` and Prefect run logs to ``<run_dir>/run.log`` in this process.

    The CLI adds the handler itself; this covers tasks on Dask workers and deployment runs.
    """
    path = os.path.abspath(Path(run_dir) / "run.log")
    for name in RUN_LOGGERS:
        lg = logging.getLogger(name)
        if lg.level == logging.NOTSET or lg.level > logging.INFO:
            lg.setLevel(logging.INFO)  # Prefect's logging setup leaves the root logger at WARNING
    with _log_lock:
        entry = _log_users.get(path)
        if entry is None and not _has_file_handler(path):  # else the CLI's own handler writes it
            h = LogFileHandler(path)
            h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
            logging.getLogger().addHandler(h)
            entry = _log_users[path] = _RunLogFile(h)
        if entry is not None:
            entry.users += 1
    try:
        yield
    finally:
        if entry is not None:
            with _log_lock:
                entry.users -= 1
                if entry.users == 0:
                    logging.getLogger().removeHandler(entry.handler)
                    entry.handler.close()
                    del _log_users[path]


# ----------------------------------------------------------------------------- task runners
def cpus() -> int:
    return max(1, os.cpu_count() or 1)


def make_task_runner(dask_address: str | None, max_workers: int) -> TaskRunner[Any]:
    if dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=dask_address)
    return ThreadPoolTaskRunner(max_workers=max(1, max_workers))


def wait_for(future: PrefectFuture) -> None:
    """Wait for a task. Ctrl-C or SIGTERM reach this (main) thread while the tasks run in worker
    threads: ask them to stop at their next batch or window, then leave. Prefect's own SIGTERM
    handler raises its TerminationSignal here, hence BaseException."""
    try:
        future.wait()
    except BaseException as e:
        request_cancel(getattr(e, "signum", None) or getattr(e, "signal", None) or 2)
        raise
    if cancel_requested():  # the task stopped because of a stop request: stop the flow too
        raise Interrupted(cancel_signal())


def collect(futures: list, what: str) -> list[dict]:
    """Wait for every future (so one failure does not orphan the others), then raise the first failure."""
    for f in futures:
        wait_for(f)
    failed = [f for f in futures if not f.state.is_completed()]
    if failed:
        get_run_logger().error(
            "%s: %d of %d tasks failed: %s",
            what,
            len(failed),
            len(futures),
            "; ".join(str(f.state.message) for f in failed),
        )
        failed[0].result()  # raises the task's exception
    return [f.result() for f in futures]


def api_settings(dask_address: str | None) -> AbstractContextManager[Any]:
    """Tasks on Dask workers must report to this flow's API; in ephemeral mode that is a
    temporary server the workers do not know about, so hand its URL to their settings."""
    if not dask_address:
        return nullcontext()
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        return nullcontext()
    fctx = FlowRunContext.get()
    url = str(fctx.client.api_url) if fctx and fctx.client else None
    return temporary_settings(updates={PREFECT_API_URL: url}) if url else nullcontext()

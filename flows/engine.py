"""What the Prefect flows share: task runners, retry rule, run.log in workers, the pipeline's logs
in the Prefect API, run names and tags, API settings.

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
from prefect.context import FlowRunContext, TaskRunContext
from prefect.futures import PrefectFuture
from prefect.logging.handlers import APILogHandler
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from pipeline.core.atomic import is_out_of_space
from pipeline.core.cancel import Interrupted, cancel_requested, cancel_signal, request_cancel
from pipeline.core.errors import InputError
from pipeline.core.logs import run_log_handler
from pipeline.runner.stages.fit import is_fit_part

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
            h = run_log_handler(path)
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


# ----------------------------------------------------------------------------- logs in the Prefect API
class PipelineLogsToAPI(APILogHandler):
    """Prefect's API log handler for the pipeline's own loggers (``pipeline``, ``flows``).

    A record logged inside a task or flow run goes to that run, as :func:`get_run_logger`'s do. A
    record from a thread the pipeline started itself (mapping windows, data loaders) carries no
    run context; it goes to ``flow_run_id``, the flow run that attached the handler, where
    Prefect's own handler would drop it with a warning per record.
    """

    def __init__(self, flow_run_id: Any = None) -> None:
        super().__init__()
        self.flow_run_id = flow_run_id

    def emit(self, record: logging.LogRecord) -> None:
        if (
            getattr(record, "flow_run_id", None) is None
            and FlowRunContext.get() is None
            and TaskRunContext.get() is None
        ):
            if self.flow_run_id is None:
                return
            record = logging.makeLogRecord({**record.__dict__, "flow_run_id": self.flow_run_id})
        super().emit(record)


@dataclass
class _SharedAPIHandler:
    """The :class:`PipelineLogsToAPI` attached in this process, and how many open :func:`logs_to_api` use it."""

    handler: PipelineLogsToAPI
    users: int = 0


_api_lock = threading.Lock()
_api_handler: dict[str, _SharedAPIHandler] = {}  # at most one entry, "handler", while one is attached


def _current_flow_run_id() -> Any:
    fctx = FlowRunContext.get()
    if fctx is not None and fctx.flow_run is not None:
        return fctx.flow_run.id
    tctx = TaskRunContext.get()
    return tctx.task_run.flow_run_id if tctx is not None else None


@contextmanager
def logs_to_api() -> Iterator[None]:
    """Send the pipeline's own log records (warnings such as "evaluation inconclusive", errors,
    stage progress) to the Prefect API as logs of the current flow or task run, for as long as
    the context is open; nested uses share one handler, so no record is sent twice.

    Prefect sends only its own loggers' records (``get_run_logger``). Its setting
    ``PREFECT_LOGGING_EXTRA_LOGGERS=pipeline,flows`` would add the others, but only when set in
    the environment of every process before Prefect is imported (a worker's flow-run process
    too), and it warns once per record logged from a thread outside a run; this handler is
    attached by the flows themselves, wherever they run. A logger that setting already covers
    gets no second handler.
    """
    with _api_lock:
        shared = _api_handler.get("handler")
        if shared is None:
            shared = _api_handler["handler"] = _SharedAPIHandler(PipelineLogsToAPI(_current_flow_run_id()))
            for name in RUN_LOGGERS:
                lg = logging.getLogger(name)
                if not any(isinstance(h, APILogHandler) for h in lg.handlers):
                    lg.addHandler(shared.handler)
        shared.users += 1
    try:
        yield
    finally:
        with _api_lock:
            shared.users -= 1
            if shared.users == 0:
                for name in RUN_LOGGERS:
                    logging.getLogger(name).removeHandler(shared.handler)
                del _api_handler["handler"]


# ----------------------------------------------------------------------------- names and tags
def stage_run_name(parameters: dict[str, Any]) -> str:
    """Task run name of a stage: ``prepare``, ``train-cnn``, ``map-decision_tree`` (the model only
    where there is one); a model's fits are training too, named by model and fit:
    ``train-cnn-fold-0``, ``train-cnn-refit``, ``train-cnn-random`` (beside its pooling ``train-cnn``)."""
    stage, model = str(parameters["stage"]), parameters.get("model")
    if model and is_fit_part(stage):
        return f"train-{model}-{stage}"
    return f"{stage}-{model}" if model else stage


def run_id_of(ref: dict) -> str:
    """The run id (the run directory's name) of a run context reference."""
    return Path(ref["run_dir"]).name


def sub_flow_run_name() -> str:
    """Flow run name of a sub-flow of a run: the run id, as the run's own flow run."""
    from prefect.runtime import flow_run

    return run_id_of(flow_run.parameters["ref"])


def run_tags(run_id: str) -> list[str]:
    """Tags of every flow and task run of a pipeline run."""
    return ["landcover", f"run:{run_id}"]


def stage_tags(stage: str, model: str | None) -> set[str]:
    """Tags of a stage task, beside the run's: the stage as the run's records name it (``prepare``,
    ``fold-0``, ``refit``, ``train``), and the model where there is one."""
    return {f"stage:{stage}"} | ({f"model:{model}"} if model else set())


def tag_this_flow_run(tags: list[str]) -> None:
    """Add ``tags`` to the flow run in progress (its tags were fixed when it was created: by the
    caller's ``prefect.tags`` context, or by the deployment)."""
    fctx = FlowRunContext.get()
    if fctx is None or fctx.flow_run is None or fctx.client is None:
        return
    now = list(fctx.flow_run.tags or [])
    new = now + [t for t in tags if t not in now]
    if new != now:
        fctx.client.update_flow_run(fctx.flow_run.id, tags=new)
        fctx.flow_run.tags = new


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

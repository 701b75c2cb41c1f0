"""How log records look and where they go when progress bars share the terminal.

Both the ``landcover`` command and the Prefect flows (in a worker's process too) write
``run.log`` with :data:`RUN_LOG_FORMAT` through :class:`RunNameFormatter`, so a line from
Prefect's engine ("Finished in state Completed()") says which task or flow run it is about.
:class:`BarSafeStreamHandler` is the console handler: it clears the progress bars (tqdm)
before it writes a record and draws them again after, so a log line never lands on the end
of a bar.
"""

from __future__ import annotations

import logging
import os

from tqdm import tqdm

from pipeline.core.atomic import LogFileHandler

RUN_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
CONSOLE_FORMAT = "%(levelname)s %(message)s"


def _prefect_dir() -> str | None:
    """Folder of the installed Prefect package (None without Prefect); not imported for this."""
    import importlib.util

    spec = importlib.util.find_spec("prefect")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.realpath(next(iter(spec.submodule_search_locations))) + os.sep


class RunNameFormatter(logging.Formatter):
    """Names the Prefect task or flow run in the records of Prefect's own engine.

    Prefect logs a run's state changes ("Finished in state Completed()", "Task run failed with
    exception ...") with the run's name only as an attribute of the record (``task_run_name`` or
    ``flow_run_name``), which its own console formatter prints and a plain format string does
    not. The pipeline's records already say what they are about, so only records that come
    from Prefect's source files get the prefix: ``task run 'train-cnn': Finished in state ...``.
    """

    def __init__(self, fmt: str | None = None, datefmt: str | None = None) -> None:
        super().__init__(fmt, datefmt)
        self._prefect = _prefect_dir()

    def _run_name(self, record: logging.LogRecord) -> str | None:
        if self._prefect is None or not os.path.realpath(record.pathname).startswith(self._prefect):
            return None
        task = getattr(record, "task_run_name", None)
        if task:
            return f"task run {task!r}"
        flow = getattr(record, "flow_run_name", None)
        return f"flow run {flow!r}" if flow else None

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        name = self._run_name(record)
        if name is None:
            return super().formatMessage(record)
        message = record.message
        record.message = f"{name}: {message}"
        try:
            return super().formatMessage(record)
        finally:
            record.message = message


class BarSafeStreamHandler(logging.StreamHandler):
    """A console handler that writes around tqdm's progress bars: the bars on its stream are
    cleared before a record is written and drawn again after it (tqdm's ``external_write_mode``).

    (Named without a leading underscore: Prefect's logging setup keeps the root logger's
    handlers only when they look like the user's own.)
    """

    def emit(self, record: logging.LogRecord) -> None:
        with tqdm.external_write_mode(file=self.stream):
            super().emit(record)


def run_log_handler(path: str | os.PathLike[str]) -> logging.FileHandler:
    """The ``run.log`` handler: :data:`RUN_LOG_FORMAT`, Prefect's engine records naming their run;
    silent once its disk is full (:class:`~pipeline.core.atomic.LogFileHandler`)."""
    h = LogFileHandler(path)
    h.setFormatter(RunNameFormatter(RUN_LOG_FORMAT))
    return h

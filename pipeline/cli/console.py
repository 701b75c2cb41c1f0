"""Logging of the ``landcover`` command: levels of the packages' loggers and the console filters
that keep a command-line run's output to what the user needs (``run.log`` keeps everything)."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from pipeline.core.errors import InputError
from pipeline.core.logs import CONSOLE_FORMAT, BarSafeStreamHandler, RunNameFormatter

# Logger naming rule: every module logs to ``logging.getLogger(__name__)``; the CLI sets the
# level of the packages' parent loggers (Prefect's logging setup leaves the root at WARNING).
APP_LOGGERS = ("pipeline", "flows")


def console_handler(stream: TextIO) -> logging.Handler:
    """The console's log handler: ``LEVEL message``, written around any progress bars on the
    same terminal (:class:`~pipeline.core.logs.BarSafeStreamHandler`), Prefect's engine records
    naming their task or flow run (:class:`~pipeline.core.logs.RunNameFormatter`)."""
    handler = BarSafeStreamHandler(stream)
    handler.setFormatter(RunNameFormatter(CONSOLE_FORMAT))
    return handler


def setup_logging(debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=[console_handler(sys.stderr)])
    for noisy in ("rasterio", "fiona", "pyogrio", "matplotlib", "PIL", "numexpr"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def show_progress(no_progress: bool) -> bool:
    """Progress bars only on a terminal: redirected to a file or a pipe, a bar is a trail of
    carriage returns between the log lines (``--no-progress`` hides them on a terminal too)."""
    if no_progress:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def _hide_routine_states(record: logging.LogRecord) -> bool:
    """Console filter: drop Prefect's "Finished in state Completed()" of every task and sub-flow
    (run.log keeps them; failures and other states still show)."""
    return not (
        record.name.startswith(("prefect.task_runs", "prefect.flow_runs"))
        and record.getMessage().startswith("Finished in state Completed")
    )


def quiet_console(hide_input_errors: bool = True) -> None:
    """Filter the console handlers of the root logger (Prefect's included) for a command-line run."""
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            h.addFilter(_hide_routine_states)
            if hide_input_errors:
                h.addFilter(_hide_input_errors)


def _hide_input_errors(record: logging.LogRecord) -> bool:
    """Console filter: drop engine records about an InputError, and Prefect's crash reports
    after a Ctrl-C or SIGTERM (run.log keeps them in full)."""
    from pipeline.core.cancel import cancel_requested

    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, InputError) or "InputError" in record.getMessage():
        return False
    if cancel_requested() and record.levelno >= logging.WARNING:
        return False  # the stop is reported once, by main(); the engine's view of it goes to run.log
    return True

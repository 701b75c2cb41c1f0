"""The ``landcover`` command line.

Exit codes: 0 done; 2 bad input (:class:`~pipeline.core.errors.InputError`: one line on stderr,
``--debug`` shows the traceback); 3 the run finished but a model failed (named on stderr).
Bad input prints one line and exits with
code 2; ``--debug`` shows the traceback instead.

This module builds the parser and turns errors into exit codes; the subcommands live in their
own modules: ``run`` and ``demo`` in :mod:`pipeline.cli.run`, ``map`` in :mod:`pipeline.cli.map`,
``bench`` and the other dispatch points to ``flows`` and ``bench`` in :mod:`pipeline.cli.dispatch`,
``assess`` and ``assess-design`` in :mod:`pipeline.cli.assess`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any

from pipeline.cli.console import setup_logging
from pipeline.cli.dispatch import SUBCOMMAND_MODULES, add_bench_command
from pipeline.cli.map import add_map_command
from pipeline.cli.run import add_run_commands
from pipeline.core.errors import InputError


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, when it has one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or action.option_strings == []
            or default in (None, False, [], argparse.SUPPRESS)
            or isinstance(action, (argparse._HelpAction, argparse._VersionAction))
        ):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *a: Any, **k: Any) -> None:
        k.setdefault("formatter_class", HelpFormatter)
        super().__init__(*a, **k)


def build_parser() -> argparse.ArgumentParser:
    from pipeline import __version__

    ap = _Parser(prog="landcover", description="Land-cover maps with spatially honest accuracy.")
    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_run_commands(sub)
    add_map_command(sub)
    add_bench_command(sub)
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return ap


def _one_line(msg: str) -> str:
    return " ".join(msg.split()) or "(no message)"


def _os_error_exit_code(e: OSError) -> int | None:
    import errno

    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return 4
    if e.errno in (
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENAMETOOLONG,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ENOENT,
        errno.EEXIST,
    ):
        return 2
    return None


def _describe_os_error(e: OSError) -> str:
    what = e.strerror or str(e)
    return f"{e.filename}: {what}" if e.filename else what


def main(argv: list[str] | None = None) -> int:
    from pipeline.core import cancel as cancel

    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    # Prefect runs offline by default: no telemetry from a command-line tool unless asked for,
    # and a generous start-up time for the temporary server on busy machines.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    setup_logging(debug)
    cancel.reset()
    restore_signals = cancel.install_signal_handlers()
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except InputError as e:
        if debug:
            raise
        print(f"landcover: error: {_one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        # The environment, not the code: a read-only or full output folder, a name the file
        # system refuses. One line naming the file; anything else keeps its traceback.
        code = getattr(e, "exit_code", None) or _os_error_exit_code(e)  # SourceUnavailableError says its own
        if debug or code is None:
            raise
        print(f"landcover: error: {_one_line(_describe_os_error(e))}", file=sys.stderr)
        return code
    except KeyboardInterrupt as e:
        # Ctrl-C or SIGTERM: one line, the shell's exit code (130 / 143), finished stages kept.
        signum = getattr(e, "signum", None) or cancel.cancel_signal()
        run_id = getattr(e, "run_id", None)
        print(
            f"landcover: interrupted; resume with --resume {run_id}" if run_id else "landcover: interrupted",
            file=sys.stderr,
        )
        return 128 + int(signum)
    finally:
        restore_signals()


def _exit(code: int) -> None:
    """Exit the process. After an interrupt, run the exit hooks (log flush, stopping Prefect's
    server) and leave without the interpreter's teardown of torch, GDAL and Prefect's threads,
    which can take longer than the user is willing to wait for a stop they asked for."""
    if code in (130, 143):
        import atexit

        sys.stdout.flush()
        sys.stderr.flush()
        # Flush log handlers while Prefect's server still runs: its API log handler would
        # otherwise wait 5 s at the very end for a server that is gone.
        logging.shutdown()
        atexit._run_exitfuncs()
        os._exit(code)
    sys.exit(code)


def console_main() -> None:
    """The ``landcover`` console script."""
    _exit(main())


if __name__ == "__main__":
    console_main()

"""The ``landcover`` command line (``python -m pipeline.cli``): :func:`console_main` is the
console script, :func:`build_parser` the argument parser of every subcommand. The parser and
exit codes live in :mod:`pipeline.cli.main`; each subcommand in its own module (``run``, ``map``,
``assess``, ``dispatch`` for ``bench`` and the flows)."""

from pipeline.core.lazy import lazy_exports

__all__ = ["build_parser", "console_main"]
__getattr__, __dir__ = lazy_exports(__name__, {"build_parser": "main", "console_main": "main"})

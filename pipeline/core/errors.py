"""Errors that mean "the input is wrong", as opposed to bugs.

The CLI turns an :class:`InputError` into one line on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad user input: a file, field, key or value that the user must change.

    The message must name the file, field or key and say what to change.
    """

    exit_code = 2  # what the CLI exits with


class OutOfSpaceError(InputError):
    """An output could not be written for lack of disk space (or quota).

    The message names the path and the space needed. The CLI exits with code 4, so that a
    scheduler can tell "free some space and retry" from bad input.
    """

    exit_code = 4


class OutputWriteError(InputError):
    """GDAL or the file system reported an error while an output was written; the partial
    file has been removed and no stage was recorded."""


class UnreadableInputError(InputError):
    """An input file opened but its pixels cannot be read: a damaged or incomplete file, or a VRT
    whose source is missing. Not transient: reading it again gives the same error, so it is
    never retried. The message keeps GDAL's own cause."""


class SourceUnavailableError(OSError):
    """A network source (``/vsicurl/``, ``/vsis3/``, ...) did not answer in time or at all: possibly
    transient, so a scheduler may retry it. The CLI prints its one-line message and exits with
    :attr:`exit_code`."""

    exit_code = 2


class LeakageError(InputError):
    """The independent split audit found a training/test leak."""

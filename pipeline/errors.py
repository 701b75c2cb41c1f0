"""Errors that mean "the input is wrong", as opposed to bugs.

The CLI turns an :class:`InputError` into one line on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad user input: a file, field, key or value that the user must change.

    The message must name the file, field or key and say what to change.
    """


class LeakageError(InputError):
    """The independent split audit found a training/test leak."""

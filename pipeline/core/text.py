"""Lists in messages: a warning or an error that names 120 bands names the first few and says how
many there are, so that the line stays readable and the rest of the console is not buried."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["short_list"]

#: Items a message names before it shortens the list.
SHORT_LIST_ITEMS = 6


def short_list(items: Iterable[object], limit: int = SHORT_LIST_ITEMS, sep: str = ", ") -> str:
    """``items`` joined by ``sep``; more than ``limit`` of them become the first ``limit - 1``,
    an ellipsis and the last, with the count: ``"B01, B02, B03, B04, B05, ..., B120 (120 in all)"``."""
    names = [str(i) for i in items]
    if len(names) <= limit:
        return sep.join(names)
    return sep.join([*names[: limit - 1], "...", names[-1]]) + f" ({len(names)} in all)"

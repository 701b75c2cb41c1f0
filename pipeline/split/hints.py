"""Advice when a spatial strategy cannot split the input, or leaves a class without a test.

The advice is a change of ``split.*`` settings tried on the very same input (block size,
``group_by``, ``k``, buffer; most faithful first) after which the split works, or the reason why
no spatial split is possible. The trials run the strategy itself (passed in by
:func:`pipeline.split.make.make_splits`), quietly and within :data:`MAX_HINT_TRIALS`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from pipeline.core.errors import InputError
from pipeline.split.assign import candidate_sizes, default_buffer, extent
from pipeline.split.layout import buffer_of
from pipeline.split.types import SplitFunction, SplitInput

__all__ = ["MAX_HINT_TRIALS", "fallback_change", "hint", "sets", "warn_untested"]

log = logging.getLogger(__name__)

#: Split attempts spent looking for a change that works (on the error path only): enough for every
#: block size with fewer folds on small inputs, where such changes are needed.
MAX_HINT_TRIALS = 48


def _candidate_changes(inp: SplitInput) -> Iterator[dict[str, Any]]:
    """Config changes worth trying on an input that cannot be split, most faithful first."""
    cfg = inp.cfg
    default_buf = default_buffer(inp.patch_size, (inp.rx, inp.ry))
    if cfg.buffer is not None and cfg.buffer < default_buf:  # a leaking buffer: the default is leak-free
        yield {"buffer": None}
    if cfg.group_by == "scene":
        yield {"group_by": "auto"}
    pix = max(inp.rx, inp.ry)
    sizes = candidate_sizes(inp.patch_size * pix + buffer_of(inp), pix, max(extent(inp.xy, inp.rx, inp.ry)))
    sizes = [s for s in sizes[::-1] if s != cfg.block_size]  # largest first: the largest that works
    for gb in dict.fromkeys([cfg.group_by if cfg.group_by != "scene" else "auto", "block"]):
        if gb != cfg.group_by and gb != "auto":
            yield {"group_by": gb}
        for s in sizes:
            yield {"group_by": gb, "block_size": s} if gb != cfg.group_by else {"block_size": s}
    if cfg.buffer is not None and cfg.buffer > default_buf:
        yield {"buffer": None}
    if cfg.strategy in ("kfold", "auto"):  # fewer folds, alone, with blocks cut everywhere, then per size
        for k in range(cfg.k - 1, 1, -1):
            yield {"k": k}
            if cfg.group_by == "auto":
                yield {"group_by": "block", "k": k}
        for k in range(cfg.k - 1, 1, -1):
            for s in sizes:
                yield {"block_size": s, "k": k}


def _works(inp: SplitInput, change: dict[str, Any], split: SplitFunction) -> tuple[bool, bool]:
    """(``split`` succeeds, and every class is in train and test) after applying ``change``."""
    trial = replace(inp, cfg=inp.cfg.model_copy(update=change), quiet=True)
    try:
        res = split(trial)
    except InputError:
        return False, False
    return True, not any(res.report["missing_classes"].values())


def _too_compact(inp: SplitInput, classes: list[int] | None = None) -> tuple[list[str], float]:
    """Classes whose labels span less than two blocks of the smallest admissible size, and that size."""
    pix = max(inp.rx, inp.ry)
    s0 = inp.patch_size * pix + buffer_of(inp)
    cands = range(len(inp.names)) if classes is None else classes
    return [inp.names[c] for c in cands if max(extent(inp.xy[inp.cls == c], inp.rx, inp.ry)) < 2 * s0], s0


def _no_split_reason(inp: SplitInput, classes: list[int] | None = None) -> str:
    """Why no change tried helps: the classes too compact for two blocks of the smallest size."""
    small, s0 = _too_compact(inp, classes)
    if small:
        return (
            f"no spatial split is possible for class(es) {', '.join(map(repr, small))}: their labels span "
            f"less than two blocks of the smallest admissible size (patch width + buffer = {s0:g} map "
            f"units), so they cannot be trained and tested without a training patch seeing test pixels; "
            f"add labels for them in other places"
        )
    return (
        "none of the block sizes, groupings, fold numbers or buffers tried works for this input; "
        "add labels in other places"
    )


def _find_change(
    inp: SplitInput, split: SplitFunction, complete_only: bool, budget: int = MAX_HINT_TRIALS
) -> dict[str, Any] | None:
    """The first candidate change (at most ``budget`` tried) after which ``split`` works and every
    class is in train and test; failing that (unless ``complete_only``), the first that works."""
    fallback = None
    for i, change in enumerate(_candidate_changes(inp)):
        if i >= budget:
            break
        ok, complete = _works(inp, change, split)
        if ok and complete:
            return change
        if ok and fallback is None and not complete_only:
            fallback = change
    return fallback


def sets(change: dict[str, Any]) -> str:
    """``--set split.KEY=VALUE ...`` for a change of ``split.*`` settings."""
    return " ".join(
        f"--set split.{k}={'null' if v is None else f'{v:g}' if isinstance(v, float) else v}" for k, v in change.items()
    )


def _at_default(change: dict[str, Any], cfg: Any) -> bool:
    """Whether every setting ``change`` touches is at its default value in ``cfg`` (so the user left
    it to the pipeline)."""
    fields = type(cfg).model_fields
    return all(getattr(cfg, k) == fields[k].get_default(call_default_factory=True) for k in change)


def fallback_change(inp: SplitInput, split: SplitFunction) -> dict[str, Any] | None:
    """A change, tried on this very input, that makes ``split`` work, touching only settings left
    at their defaults (block size, grouping, folds), or None. Preferred: a change after which every
    class is trained and tested; failing that, the first that works at all."""
    fallback = None
    tried = 0
    for change in _candidate_changes(inp):
        if not _at_default(change, inp.cfg):
            continue
        if tried >= MAX_HINT_TRIALS:
            break
        tried += 1
        ok, complete = _works(inp, change, split)
        if ok and complete:
            return change
        if ok and fallback is None:
            fallback = change
    return fallback


def hint(inp: SplitInput, split: SplitFunction) -> str:
    """A change tried on this very input that makes ``split`` (the strategy that failed) work, or
    why none can."""
    change = _find_change(inp, split, complete_only=False)
    return f"tried on this input, this works: {sets(change)}" if change else _no_split_reason(inp)


def warn_untested(inp: SplitInput, names: list[str], split: SplitFunction) -> None:
    """Classes without test samples (after ``split``, the strategy that left them so): one warning
    with a change that gives every class a test, if any."""
    ids = [inp.names.index(n) for n in names]
    hopeless = len(_too_compact(inp, ids)[0]) == len(ids)  # no block size can help: spare the trials
    change = None if hopeless else _find_change(inp, split, complete_only=True, budget=MAX_HINT_TRIALS // 2)
    fix = (
        f"tried on this input, this gives every class a test: {sets(change)}" if change else _no_split_reason(inp, ids)
    )
    log.warning(
        "split: class(es) %s have no test samples, so their accuracy cannot be measured; %s",
        ", ".join(map(repr, names)),
        fix,
    )

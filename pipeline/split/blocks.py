"""``split.strategy: blocks`` (default): whole units to train, validation and test.

Units (:mod:`pipeline.split.layout`) are placed with target fractions, stratified by class;
then the buffer removes training and validation samples near a test sample, and the audit
must find no leak (see the rules in :mod:`pipeline.split.make`).
"""

from __future__ import annotations

import numpy as np

from pipeline.core.errors import InputError
from pipeline.split.assign import SPLIT_NAMES, TEST, TRAIN, assign_units
from pipeline.split.layout import (
    buffer_of,
    buffered_labels,
    cuttable,
    layout_frame,
    plan_units,
    sub_block_report,
    warn_sub_blocks,
)
from pipeline.split.summary import class_counts, fold_of, missing_classes
from pipeline.split.types import Layout, SplitInput, SplitResult

__all__ = ["split_blocks"]


def _assign_blocks(inp: SplitInput, buffer: float) -> tuple[Layout, np.ndarray]:
    """Units and their split (U,); ``auto`` cuts, and assigns again, classes left without a test unit."""
    fr = inp.cfg.fractions
    fractions = np.array([fr.train, fr.validation, fr.test])
    need = 3 if fr.validation > 0 else 2
    force: tuple[int, ...] = ()
    for _ in range(2):
        lay = plan_units(inp, buffer, 5, force)
        U = lay.unit_ids.size
        if U < need:
            what = "scene(s)" if lay.size is None else f"block(s) of {lay.size:g} map units ({lay.n_groups} groups)"
            raise InputError(f"split: the labels fall in only {U} {what}; train/validation/test need at least {need}")
        lab = assign_units(lay.C, fractions, np.random.default_rng(inp.seed), (TRAIN, TEST))
        untested = np.flatnonzero(lay.C[lab == TEST].sum(0) == 0)
        force = cuttable(inp, lay, untested) if inp.cfg.group_by == "auto" and lay.size else ()
        if not force:
            break
        force = tuple(sorted(set(force) | set(lay.sub_classes)))
    warn_sub_blocks(inp, lay)
    return lay, lab


def split_blocks(inp: SplitInput) -> SplitResult:
    """``blocks``: whole units to train/validation/test, stratified; buffer; audit must be 0."""
    buffer = buffer_of(inp)
    lay, lab = _assign_blocks(inp, buffer)
    U = lay.unit_ids.size
    unit_split = np.array(SPLIT_NAMES, dtype=object)[lab].astype(str)
    labels, dropped, audit = buffered_labels(inp, unit_split, lay, buffer, "split")
    counts = class_counts(labels, inp.cls, inp.names)
    report = {
        "strategy": "blocks",
        "block_size": lay.size,
        "buffer": buffer,
        "seed": int(inp.seed),
        "counts": counts,
        "dropped_by_buffer": dropped,
        "missing_classes": missing_classes(counts),
        "audit": audit,
        **sub_block_report(inp, lay),
    }
    gdf = layout_frame(inp, lay, list(unit_split), np.zeros(U, dtype=np.int64))
    return SplitResult(
        "blocks",
        [fold_of(labels)],
        labels,
        np.zeros(inp.n, dtype=np.int64),
        lay.block,
        gdf,
        report,
        block_size=lay.size,
        buffer=buffer,
        fold_splits=[labels],
    )

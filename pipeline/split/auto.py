"""``split.strategy: auto`` (default): spatial k-fold cross-validation, unless the reference data
are large enough for one blocks split to test every class on several groups.

Why k-fold by default: with the few polygons analysts digitise, one 70/15/15 blocks split tests
each class on one or two polygons, so a verdict would rest on a handful of them. Group k-fold
(Roberts et al. 2017) tests every polygon or block exactly once, in the fold that holds it out,
with the same buffer and audit as one split; the metrics then come from the pooled
out-of-fold predictions, and the map from a model refitted on all labelled data.

The rule:

* **blocks** when the reference data are large (dense labels with sampling on:
  ``SplitInput.large``) *and* one blocks split tests every class that has at least two groups
  on at least :data:`MIN_TEST_GROUPS` groups. There, k-fold would cost k fits for little gain.
* **blocks** also when k-fold is impossible on this input, or leaves classes untested that one
  blocks split tests (tiny polygons, one per class: a single split can still give each class a
  held-out part, where every fold cannot keep training data for it).
* **kfold** otherwise (``split.k`` folds, the buffer, the audit of every fold).

The split report (``split.json``, ``metrics.json["split"]``) keeps the chosen strategy under
``strategy`` and says ``requested: auto`` and why under ``auto_reason``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pipeline.core.errors import InputError
from pipeline.split.blocks import split_blocks
from pipeline.split.kfold import split_kfold
from pipeline.split.types import SplitInput, SplitResult

__all__ = ["MIN_TEST_GROUPS", "split_auto", "classes_tested_on_few_groups"]

#: Fewest groups (polygons, or regions of a label raster) a class must be tested on for a single
#: split to be evidence about it; below that, a class's accuracy is that of one polygon.
MIN_TEST_GROUPS = 2


def classes_tested_on_few_groups(inp: SplitInput, result: SplitResult) -> list[str]:
    """Classes that have at least :data:`MIN_TEST_GROUPS` groups but are tested on fewer (all folds
    of ``result`` together)."""
    tested = np.zeros(inp.n, dtype=bool)
    for f in result.folds:
        tested[f.test] = True
    short = []
    for c, name in enumerate(inp.names):
        mine = inp.cls == c
        have = np.unique(inp.groups[mine]).size
        got = np.unique(inp.groups[mine & tested]).size
        if have >= MIN_TEST_GROUPS and got < MIN_TEST_GROUPS:
            short.append(name)
    return short


def _tagged(result: SplitResult, reason: str) -> SplitResult:
    report = {**result.report, "requested": "auto", "auto_reason": reason}
    return dataclasses.replace(result, report=report)


def _n_tested(result: SplitResult) -> int:
    return len(result.report["counts"]["test"]) - len(result.report["missing_classes"]["test"])


def split_auto(inp: SplitInput) -> SplitResult:
    """``auto``: group k-fold, or one blocks split where that is the better evidence (see above)."""
    single: SplitResult | None = None
    if inp.large:
        try:
            single = split_blocks(inp)
        except InputError:
            single = None
        short = classes_tested_on_few_groups(inp, single) if single is not None else None
        if single is not None and not short:
            return _tagged(
                single,
                "dense labels with sampling on, and one blocks split tests every class on at least "
                f"{MIN_TEST_GROUPS} groups",
            )
        why = (
            f"one blocks split would test class(es) {', '.join(map(repr, short))} on fewer than {MIN_TEST_GROUPS} groups"
            if short
            else "one blocks split is not possible on this input"
        )
    else:
        why = "the reference data are not large (no dense-label sampling): every polygon or block is tested once"
    try:
        folds = split_kfold(inp)
    except InputError as e:
        single = single if single is not None else _try_blocks(inp)
        if single is None:
            raise
        return _tagged(single, f"spatial {inp.cfg.k}-fold cross-validation is not possible on this input ({e})")
    if folds.report["missing_classes"]["test"]:
        single = single if single is not None else _try_blocks(inp)
        if single is not None and _n_tested(single) > _n_tested(folds):
            return _tagged(
                single,
                f"one blocks split tests {_n_tested(single)} classes, spatial {inp.cfg.k}-fold "
                f"cross-validation only {_n_tested(folds)}",
            )
    return _tagged(folds, why)


def _try_blocks(inp: SplitInput) -> SplitResult | None:
    try:
        return split_blocks(inp)
    except InputError:
        return None

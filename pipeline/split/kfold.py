"""``split.strategy: kfold``: spatial k-fold cross-validation.

Units (:mod:`pipeline.split.layout`) are dealt into k folds, stratified by class; in fold i the
units of fold i are test, a share ``fractions.validation`` of the others validation, the rest
training; the same buffer and audit as ``blocks`` in every fold (see :mod:`pipeline.split.make`).
"""

from __future__ import annotations

import numpy as np

from pipeline.core.errors import InputError, LeakageError
from pipeline.split.assign import TRAIN, assign_kfold, assign_units
from pipeline.split.layout import (
    ClassWithoutTraining,
    buffer_of,
    buffered_labels,
    cuttable,
    layout_frame,
    plan_units,
    sub_block_report,
    warn_sub_blocks,
)
from pipeline.split.summary import class_counts, fold_of, merge_audits, missing_classes
from pipeline.split.types import Layout, SplitInput, SplitResult

__all__ = ["KFOLD_DEALS", "split_kfold"]


def _kfold_units(lay: Layout, k: int, rng: np.random.Generator, train_only: tuple[int, ...] = ()) -> np.ndarray:
    """Fold per unit (U,): units holding a class found nowhere else, or a class of ``train_only``,
    are never test (-1)."""
    present = lay.C > 0
    untestable = present.sum(0) == 1
    untestable[list(train_only)] = True
    never_test = present[:, untestable].any(1)
    testable = np.flatnonzero(~never_test)
    if testable.size < k:
        what = "scene(s)" if lay.size is None else f"block(s) of {lay.size:g} map units ({lay.n_groups} groups)"
        raise InputError(
            f"split: the labels fall in only {testable.size} usable {what} but split.k={k} folds need at least {k}"
        )
    ufold = np.full(lay.unit_ids.size, -1, dtype=np.int64)
    ufold[testable] = assign_kfold(lay.C[testable], k, rng)
    return ufold


#: Layouts already planned in one :func:`split_kfold` call, by (classes cut, classes kept whole):
#: dealings differ only in their random draws, so they share the (costly) choice of block size.
_Layouts = dict[tuple[tuple[int, ...], tuple[int, ...]], Layout]


def _plan(
    inp: SplitInput, buffer: float, k: int, force: tuple[int, ...], keep: tuple[int, ...], memo: _Layouts
) -> Layout:
    if (force, keep) not in memo:
        memo[force, keep] = plan_units(inp, buffer, k, force, keep_whole=keep)
    return memo[force, keep]


def _assign_folds(
    inp: SplitInput,
    buffer: float,
    k: int,
    deal: int = 0,
    train_only: tuple[int, ...] = (),
    memo: _Layouts | None = None,
) -> tuple[Layout, np.ndarray, np.random.Generator]:
    """Units, their fold (U,) and the generator to continue with; ``auto`` cuts, and deals again,
    classes whose units all fell in one fold (that fold would have no training data for them).
    ``deal`` > 0 draws another dealing from the same seed (see :data:`KFOLD_DEALS`); the polygons
    of ``train_only`` classes are kept whole and never tested."""
    memo = {} if memo is None else memo
    force: tuple[int, ...] = ()
    for _ in range(2):
        lay = _plan(inp, buffer, k, force, train_only, memo)
        rng = np.random.default_rng(inp.seed if deal == 0 else [inp.seed, deal])
        ufold = _kfold_units(lay, k, rng, train_only)
        present = lay.C > 0
        one_fold = [
            c
            for c in range(present.shape[1])
            if c not in train_only and np.unique(ufold[present[:, c]]).size == 1 and ufold[present[:, c]][0] >= 0
        ]
        force = cuttable(inp, lay, one_fold) if inp.cfg.group_by == "auto" and lay.size else ()
        if not force:
            break
        force = tuple(sorted(set(force) | set(lay.sub_classes)))
    return lay, ufold, rng


def _kfold_report(
    inp: SplitInput, lay: Layout, buffer: float, k: int, per_fold: list[dict], train_only: tuple[int, ...]
) -> dict:
    names = inp.names
    return {
        "strategy": "kfold",
        "block_size": lay.size,
        "buffer": buffer,
        "seed": int(inp.seed),
        "k": k,
        "counts": per_fold[0]["counts"],
        "dropped_by_buffer": per_fold[0]["dropped_by_buffer"],
        "missing_classes": {
            "train": sorted({c for p in per_fold for c in p["missing_classes"]["train"]}),
            "test": [c for c in names if not any(p["counts"]["test"][c] for p in per_fold)],
        },
        "audit": merge_audits([p["audit"] for p in per_fold]),
        "folds": per_fold,
        "train_only_classes": [names[c] for c in train_only],
        **sub_block_report(inp, lay),
    }


#: Dealings of the units into folds tried before kfold gives up. A dealing can leave a class
#: without training data in one fold once the buffer has cleared the ground around that fold's
#: test units (a small polygon beside a test block); another dealing of the same units, drawn
#: from the same seed, usually does not. The first dealing is the one runs have always used.
KFOLD_DEALS = 8


def split_kfold(inp: SplitInput) -> SplitResult:
    """``kfold``: units dealt into k folds; in fold i the units of fold i are test, a share
    ``fractions.validation`` of the others validation; buffer and audit in every fold.

    When no dealing keeps training data for some class in every fold (its polygons are so small
    or so close together that testing one part leaves the buffer nothing of the rest), that
    class is made *train-only*: its polygons are kept whole, the units holding them are never
    test, and it is reported under ``train_only_classes`` and as a class without test samples.
    The other classes are still cross-validated (a small polygon must not stop the evaluation
    of the rest). The split fails only when no class is left to test in k folds.
    """
    buffer = buffer_of(inp)
    train_only: tuple[int, ...] = ()
    memo: _Layouts = {}
    while True:
        first: _FoldWithoutTraining | None = None
        for deal in range(KFOLD_DEALS):
            try:
                return _kfold_dealt(inp, buffer, deal, train_only, memo)
            except _FoldWithoutTraining as e:
                first = first or e
        assert first is not None
        if first.cls is None or first.cls in train_only:
            raise InputError(str(first)) from None
        train_only = tuple(sorted((*train_only, first.cls)))


class _FoldWithoutTraining(InputError):
    """The buffer (or the dealing) left a class (``cls``; None: everything) without training data in a fold."""

    def __init__(self, message: str, cls: int | None) -> None:
        super().__init__(message)
        self.cls = cls


def _kfold_dealt(
    inp: SplitInput, buffer: float, deal: int, train_only: tuple[int, ...] = (), memo: _Layouts | None = None
) -> SplitResult:
    k = int(inp.cfg.k)
    lay, ufold, rng = _assign_folds(inp, buffer, k, deal, train_only, memo)
    val_share = float(inp.cfg.fractions.validation)
    fold_splits: list[np.ndarray] = []
    per_fold: list[dict] = []
    unit_split0: list[str] = []
    for f in range(k):
        rest = np.flatnonzero(ufold != f)
        lab_rest = assign_units(lay.C[rest], np.array([1.0 - val_share, val_share]), rng, (TRAIN,))
        unit_split = np.full(lay.unit_ids.size, "test", dtype=object)
        unit_split[rest] = np.array(["train", "validation"], dtype=object)[lab_rest]
        if f == 0:
            unit_split0 = [str(v) for v in unit_split]
        try:
            labels, dropped, audit = buffered_labels(inp, unit_split, lay, buffer, f"split (kfold, fold {f})")
        except LeakageError:
            raise  # a leak is never the dealing's fault
        except ClassWithoutTraining as e:
            raise _FoldWithoutTraining(str(e), e.cls) from None
        except InputError as e:
            raise _FoldWithoutTraining(str(e), None) from None
        counts = class_counts(labels, inp.cls, inp.names)
        per_fold.append(
            {
                "fold": f,
                "counts": counts,
                "dropped_by_buffer": dropped,
                "missing_classes": missing_classes(counts),
                "audit": audit,
            }
        )
        fold_splits.append(labels)
    warn_sub_blocks(inp, lay)
    report = _kfold_report(inp, lay, buffer, k, per_fold, train_only)
    if deal:
        report["deal"] = deal
    gdf = layout_frame(inp, lay, unit_split0, ufold)
    return SplitResult(
        "kfold",
        [fold_of(lab) for lab in fold_splits],
        fold_splits[0],
        ufold[lay.unit_of],
        lay.block,
        gdf,
        report,
        block_size=lay.size,
        buffer=buffer,
        fold_splits=fold_splits,
    )

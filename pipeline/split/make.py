"""Spatially disjoint train/validation/test splits shared by every model.

Strategies (``split.strategy``)
-------------------------------
``auto`` (default; :mod:`pipeline.split.auto`)
    ``kfold`` below, unless the reference data are large (dense labels with
    sampling on) and one ``blocks`` split tests every class on at least two
    groups; then ``blocks``. The report names the strategy chosen and why.
``blocks`` (:mod:`pipeline.split.blocks`)
    A square grid of blocks in map units is laid over the samples; whole blocks
    go to train, validation or test with target fractions (default 70/15/15 of
    the samples), stratified by class. Then a buffer removes training and
    validation samples that lie near a test sample, and the independent audit
    (:mod:`pipeline.split.audit`) must find no patch of one split that contains a
    pixel of another; otherwise :class:`~pipeline.core.errors.LeakageError`.
``kfold`` (:mod:`pipeline.split.kfold`)
    Spatial k-fold cross-validation: blocks are dealt into k folds (stratified);
    in fold i the blocks of fold i are test, a share ``fractions.validation`` of
    the remaining blocks is validation, the rest is training; same buffer and
    audit in every fold. A class that no dealing can test while keeping training
    data for it in every fold is made train-only (never tested, reported).
``random`` (:mod:`pipeline.split.random`)
    Stratified random pixel split: the contrast that is *expected* to leak. Its
    audit is computed and reported, never enforced.
``predefined`` (:mod:`pipeline.split.predefined`)
    The user's own split (see below).

Rules
-----
Block grid
    Anchored at ``(floor(min x / s) * s, floor(min y / s) * s)`` for block size
    ``s``; the block of a sample is ``floor((x - x0) / s), floor((y - y0) / s)``,
    and its id is ``by * nx + bx`` (row-major from the anchor).
Default block size
    Let ``P = k * max(|res_x|, |res_y|)`` (patch width) and ``B`` the buffer.
    The smallest admissible size is ``s0 = P + B``. Candidates are
    ``s0 * sqrt(2) ** j`` (j = 0, 1, ...), each rounded up to a whole number of
    pixels, below the labelled extent. The default is the largest candidate
    that still yields at least ``min(max(50, 5 * k), units(s0))`` assignment
    units, where ``units(s)`` is the number of non-empty blocks after group
    assignment at size ``s``. So blocks are as large as possible (less spatial
    dependence across splits, less buffer loss) while leaving enough blocks to
    stratify, and never smaller than a patch width plus the buffer.
Group integrity
    All samples of one ``group`` (source polygon or point) belong to one block:
    the block that holds most of its samples (ties: the smallest block id).
    Pixels of a polygon that spill into a neighbouring block therefore follow
    the polygon's split; the buffer and the audit work on true coordinates, so
    the guarantee is unaffected.
Buffer
    Distance between samples is the Chebyshev distance in map units,
    ``max(|dx|, |dy|)``, so the buffer zone of a test sample is the square of
    half-side ``buffer`` centred on it. Training and validation samples within
    (``<=``) the buffer of any test sample are ``excluded``. The default buffer
    is ``(h + 1/2) * max(|res_x|, |res_y|)`` with ``h = k // 2``, i.e. the
    zone is the test sample's own k x k patch footprint (for non-square
    pixels, that of the larger side). A kept train/test pair then differs by
    at least h + 1 pixels along some axis, so no k x k footprint of one
    contains the centre of the other; the half-pixel margin keeps this robust
    to floating-point noise. (Validation vs training is not buffered.)
Stratification
    Classes are handled rarest first (fewest blocks): each class gets a
    training block and then a test block if it has one left. A class found in a
    single block (single group) is put in training and reported under
    ``missing_classes["test"]`` (kfold: its block is never a test block, fold
    -1). Remaining blocks are placed largest first into the split that brings
    the per-class and overall counts closest to the targets.
Reproducibility
    Only ``numpy.random.default_rng(seed)`` and sorted orderings are used, so the
    same samples, config and seed give the same assignment in any process.
Sub-blocks (``split.group_by``)
    ``auto`` (default) keeps polygons whole, except for a class whose polygons
    fall in fewer than two blocks (so it could not be both trained and tested):
    its polygons are cut at block edges (group = polygon x block), with a
    warning naming the class; its test then measures generalisation to unseen
    parts of the same polygons, separated by the buffer, which is weaker
    evidence than unseen polygons. ``polygon`` never cuts, ``block`` cuts every
    polygon, ``scene`` keeps whole scenes apart (no grid).
Scenes
    When the samples have a ``scene`` column, blocks, groups, the buffer and the
    audit never reach across two scenes (a missing column is one scene).
``predefined``
    The user's split, honoured as given: a ``train``/``validation``/``test``
    column of the label file (``split.column``) or scenes listed per split
    (``split.files``). No buffer is applied; the audit runs and is reported but
    never stops the run (a leaking split is reported as inflated accuracy).
Nearby settings (:mod:`pipeline.split.hints`)
    When a spatial strategy cannot split the input, a change of the settings
    left at their defaults (block size, ``group_by``, ``k``) that was tried on
    the same input and works is used instead, with a warning naming it
    (``--set split.block_size=600``) and the report's ``adjusted`` entry; a
    change that tests every class is preferred. Only when none exists (or the
    failing setting was the user's own) does the split stop, with a change that
    works (any setting) or the reason why no spatial split is possible.

Adding a strategy
-----------------
:data:`STRATEGIES` below is the one table of strategies. To add one, say ``auto``:

1. write ``split_auto(inp: SplitInput) -> SplitResult`` in a module of its own
   (``pipeline/split/auto.py``), from the pieces the others use:
   :mod:`pipeline.split.layout` (units, buffer and audit of the spatial strategies),
   :mod:`pipeline.split.summary` (counts, audit, a split reported as given), or by calling
   :func:`~pipeline.split.blocks.split_blocks` / :func:`~pipeline.split.kfold.split_kfold`;
   honour ``inp.quiet`` (no warnings during hint trials);
2. add ``"auto": Strategy(split_auto, spatial=True)`` to :data:`STRATEGIES`
   (``spatial``: whole units, ``group_by`` applies, and errors and untested classes get hints;
   the hints try fewer folds only where ``split.strategy`` is ``kfold``, see
   :mod:`pipeline.split.hints`);
3. add ``"auto"`` to ``SplitConfig.strategy`` in :mod:`pipeline.split.settings`, so that
   configs may name it.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.errors import InputError
from pipeline.split.assign import pixel_size
from pipeline.split.auto import split_auto
from pipeline.split.blocks import split_blocks
from pipeline.split.hints import fallback_change, hint, sets, warn_untested
from pipeline.split.kfold import split_kfold
from pipeline.split.predefined import split_predefined
from pipeline.split.random import split_random
from pipeline.split.settings import SplitConfig
from pipeline.split.types import SplitFunction, SplitInput, SplitResult

__all__ = ["STRATEGIES", "Strategy", "make_splits"]

REQUIRED_COLUMNS = ("x", "y", "row", "col", "class_id", "class_name", "group")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Strategy:
    """One way to split, as :data:`STRATEGIES` names it."""

    split: SplitFunction
    #: Places whole assignment units and must pass the audit (``blocks``, ``kfold``):
    #: ``split.group_by: scene`` is checked against the samples, an error ends with a change that
    #: works (:func:`~pipeline.split.hints.hint`), and classes left without a test get a warning
    #: with a fix (:func:`~pipeline.split.hints.warn_untested`).
    spatial: bool = False


#: ``split.strategy`` -> how to build the split (the one place to register a strategy; see
#: "Adding a strategy" above).
STRATEGIES: dict[str, Strategy] = {
    "auto": Strategy(split_auto, spatial=True),
    "blocks": Strategy(split_blocks, spatial=True),
    "kfold": Strategy(split_kfold, spatial=True),
    "random": Strategy(split_random),
    "predefined": Strategy(split_predefined),
}


def _check_samples(samples: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in samples.columns]
    if missing:
        raise InputError(f"split: samples table lacks column(s) {', '.join(missing)}")
    if len(samples) == 0:
        raise InputError("split: there are no labelled samples to split; check the labels file and classes")
    xy = samples[["x", "y"]].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(xy)):
        raise InputError("split: some samples have non-finite x/y coordinates")


def _classes(samples: pd.DataFrame) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Sorted class ids, their names, and per-sample class index (shape (n,))."""
    cid = samples["class_id"].to_numpy().astype(np.int64)
    ids, inv = np.unique(cid, return_inverse=True)
    first = pd.Series(samples["class_name"].astype(str).to_numpy()).groupby(cid).first()
    names = [str(first.loc[i]) for i in ids]
    return ids, names, inv.astype(np.int64)


def _scenes(samples: pd.DataFrame) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Scene code per sample (n,), scene names, and group ids made unique across scenes (n,)."""
    groups = samples["group"].to_numpy().astype(np.int64)
    if "scene" not in samples.columns:
        return np.zeros(len(samples), dtype=np.int64), ["scene"], groups
    names, code = np.unique(samples["scene"].astype(str).to_numpy(), return_inverse=True)
    if names.size > 1:  # the same group id in two scenes is two groups
        groups = pd.MultiIndex.from_arrays([code, groups]).factorize()[0].astype(np.int64)
    return code.astype(np.int64), [str(v) for v in names], groups


def _inputs(
    samples: pd.DataFrame,
    cfg: SplitConfig,
    patch_size: int,
    res: tuple[float, float],
    seed: int,
    crs: Any,
    large: bool = False,
) -> SplitInput:
    """Validate the samples and settings once; every strategy gets the result."""
    _check_samples(samples)
    rx, ry = pixel_size(res)
    if patch_size < 1 or patch_size % 2 == 0:
        raise InputError(f"split: patch size must be a positive odd number, got {patch_size}")
    _, names, cls = _classes(samples)
    scene, scene_names, groups = _scenes(samples)
    if cfg.group_by == "scene" and STRATEGIES[cfg.strategy].spatial and "scene" not in samples.columns:
        raise InputError(
            "split.group_by: 'scene' needs several scenes (the samples have no scene column); "
            "use auto, polygon or block"
        )
    return SplitInput(
        samples=samples,
        cfg=cfg,
        patch_size=int(patch_size),
        rx=rx,
        ry=ry,
        seed=int(seed),
        crs=crs,
        xy=samples[["x", "y"]].to_numpy(dtype=np.float64),
        groups=groups,
        cls=cls,
        names=names,
        scene=scene,
        scene_names=scene_names,
        large=bool(large),
    )


def make_splits(
    samples: pd.DataFrame,
    cfg: SplitConfig,
    patch_size: int,
    res: tuple[float, float],
    seed: int,
    crs: Any = None,
    large: bool = False,
) -> SplitResult:
    """Split samples into train/validation/test (or k folds) by the configured strategy.

    Parameters
    ----------
    samples : DataFrame, n rows
        Columns ``x``, ``y`` (pixel-centre map coordinates), ``row``, ``col``,
        ``class_id``, ``class_name``, ``group``, optionally ``scene`` (and the
        ``split.column`` for ``predefined``). Positions (not the index) are
        used throughout.
    cfg : SplitConfig
        ``strategy`` (a key of :data:`STRATEGIES`), ``group_by``,
        ``block_size``, ``buffer``, ``fractions``, ``k``, ``column``, ``files``.
    patch_size : int
        Patch width k in pixels (odd).
    res : (float, float)
        Pixel size ``(res_x, res_y)`` in map units (sign ignored).
    seed : int
        Seed of ``numpy.random.default_rng``.
    crs : optional
        CRS of the coordinates, attached to ``SplitResult.blocks``.
    large : bool
        The reference data are large (dense labels with sampling on): ``auto``
        may then choose one ``blocks`` split.

    Returns
    -------
    SplitResult
        ``config`` holds the settings actually used: the strategy chosen (for
        ``auto``) and those of ``cfg``, or a nearby setting when the defaults
        could not split (see below).

    Raises
    ------
    InputError
        The strategy cannot split this input and no change of the settings left
        at their defaults can (the message ends with a change that was tried and
        works, or why no spatial split is possible), or missing columns.
    LeakageError
        The independent audit found a patch of one split touching a pixel of
        another (blocks and kfold only).
    """
    inp = _inputs(samples, cfg, patch_size, res, seed, crs, large)
    strategy = STRATEGIES[cfg.strategy]
    try:
        result = strategy.split(inp)
    except InputError as e:
        if not strategy.spatial:
            raise
        change = fallback_change(inp, strategy.split)
        if change is None:
            raise type(e)(f"{e}; {hint(inp, strategy.split)}") from None
        inp = dataclasses.replace(inp, cfg=inp.cfg.model_copy(update=change))
        result = strategy.split(inp)
        log.warning(
            "split: the default settings cannot split this input (%s); using the nearby setting %s, "
            "tried on this input (set it in the config to silence this warning)",
            e,
            sets(change),
        )
        result.report["adjusted"] = {k: v for k, v in change.items()}
        result.report["adjusted_because"] = str(e)
    untested = result.report["missing_classes"]["test"]
    if strategy.spatial and untested:
        warn_untested(inp, untested, strategy.split)
    return dataclasses.replace(result, config=inp.cfg.model_copy(update={"strategy": result.strategy}))

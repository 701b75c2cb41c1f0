"""Spatially disjoint train/validation/test splits shared by every model.

Strategies (``split.strategy``)
-------------------------------
``blocks`` (default)
    A square grid of blocks in map units is laid over the samples; whole blocks
    go to train, validation or test with target fractions (default 70/15/15 of
    the samples), stratified by class. Then a buffer removes training and
    validation samples that lie near a test sample, and the independent audit
    (:mod:`pipeline.audit`) must find no patch of one split that contains a
    pixel of another; otherwise :class:`~pipeline.errors.LeakageError`.
``kfold``
    Spatial k-fold cross-validation: blocks are dealt into k folds (stratified);
    in fold i the blocks of fold i are test, a share ``fractions.validation`` of
    the remaining blocks is validation, the rest is training; same buffer and
    audit in every fold.
``random``
    Stratified random pixel split: the contrast that is *expected* to leak. Its
    audit is computed and reported, never enforced.

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
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from pipeline.audit import audit_split, check_no_leak
from pipeline.config import SplitConfig, SplitFractions
from pipeline.errors import InputError
from pipeline.split_assign import (
    EXCLUDED,
    SPLIT_NAMES,
    TEST,
    TRAIN,
    assign_kfold,
    assign_units,
    buffer_mask,
    default_buffer,
    default_size,
    extent,
    grid,
    group_blocks,
    pixel_size,
)
from pipeline.split_output import block_frame, group_frame, plot_split_map, write_splits_gpkg

__all__ = [
    "Fold",
    "SplitResult",
    "STRATEGIES",
    "make_splits",
    "random_split",
    "default_buffer",
    "default_block_size",
    "write_splits_gpkg",
    "plot_split_map",
    "SPLIT_NAMES",
]

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("x", "y", "row", "col", "class_id", "class_name", "group")


@dataclass
class Fold:
    """One train/validation/test partition.

    Attributes
    ----------
    train, validation, test : ndarray of int64, shapes (n_train,), (n_val,), (n_test,)
        Sorted integer positions into the samples table (``samples.iloc``).
    """

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


@dataclass
class SplitResult:
    """Outcome of :func:`make_splits`.

    Attributes
    ----------
    strategy : str
        A key of :data:`STRATEGIES`.
    folds : list of Fold
        One fold for ``blocks`` and ``random``, k folds for ``kfold``.
    split : ndarray of str, shape (n,)
        Per sample ``"train"``, ``"validation"``, ``"test"`` or ``"excluded"``
        (dropped by the buffer); for kfold the assignment of fold 0.
    fold : ndarray of int64, shape (n,)
        kfold: the fold in which the sample is test (-1: never test, for blocks
        holding a class found in one block only); 0 for other strategies.
    block : ndarray of int64, shape (n,)
        Assignment unit of each sample: the block its group belongs to
        (``random``: the group id).
    blocks : GeoDataFrame
        One row per block with columns ``block``, ``split`` (kfold: fold 0),
        ``fold``, ``n_samples`` and a square ``geometry`` (``random``: the
        square envelope of the group's pixels, split ``"mixed"`` if the group
        is spread over several splits).
    report : dict
        The ``"split"`` object of ``metrics.json``.
    """

    strategy: str
    folds: list[Fold]
    split: np.ndarray
    fold: np.ndarray
    block: np.ndarray
    blocks: gpd.GeoDataFrame
    report: dict
    block_size: float | None = None
    buffer: float | None = None
    fold_splits: list[np.ndarray] = field(default_factory=list)  # kfold: per-fold split labels


@dataclass(frozen=True)
class SplitInput:
    """The validated inputs every strategy receives (arrays have n rows, in samples' order)."""

    samples: pd.DataFrame
    cfg: SplitConfig
    patch_size: int
    rx: float
    ry: float
    seed: int
    crs: Any
    xy: np.ndarray  # (n, 2) float64
    groups: np.ndarray  # (n,) int64
    cls: np.ndarray  # (n,) int64 index into names
    names: list[str]

    @property
    def n(self) -> int:
        return len(self.samples)


@dataclass(frozen=True)
class Layout:
    """Blocks of one block size: the unit of each sample and samples per unit and class."""

    size: float
    block: np.ndarray  # (n,) block id of each sample's group
    unit_ids: np.ndarray  # (U,) sorted block ids
    unit_of: np.ndarray  # (n,) index into unit_ids
    C: np.ndarray  # (U, K) samples per unit and class
    x0: float
    y0: float
    nx: int
    n_groups: int


# ----------------------------------------------------------------------------- helpers


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


def default_block_size(
    samples: pd.DataFrame, patch_size: int, res: tuple[float, float], buffer: float, k: int = 5
) -> float:
    """Default block size in map units (see the module docstring for the rule).

    Parameters
    ----------
    samples : DataFrame, n rows
        Needs ``x``, ``y`` and ``group``.
    patch_size : int
        Patch width k in pixels.
    res : (float, float)
        Pixel size.
    buffer : float
        Buffer in map units.
    k : int
        Folds (only raises the wanted number of blocks to ``5 * k``).
    """
    xy = samples[["x", "y"]].to_numpy(dtype=np.float64)
    return default_size(xy, samples["group"].to_numpy(), patch_size, res, buffer, k)


def _counts(labels: np.ndarray, cls: np.ndarray, names: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for s in SPLIT_NAMES:
        bc = np.bincount(cls[labels == s], minlength=len(names))
        out[s] = {names[i]: int(bc[i]) for i in range(len(names))}
    return out


def _missing(counts: dict[str, dict[str, int]], warn: bool = False) -> dict[str, list[str]]:
    out = {s: [c for c, n in counts[s].items() if n == 0] for s in ("train", "test")}
    if warn:
        for c in out["test"]:
            log.warning("split: class %r has no test samples (its labels lie in a single block or group, or all "
                        "of its blocks went to training); its accuracy cannot be measured - add labels for %r "
                        "in other places or reduce split.block_size", c, c)
    return out


def _fold_of(labels: np.ndarray) -> Fold:
    return Fold(
        train=np.flatnonzero(labels == "train").astype(np.int64),
        validation=np.flatnonzero(labels == "validation").astype(np.int64),
        test=np.flatnonzero(labels == "test").astype(np.int64),
    )


def _apply_buffer(
    xy: np.ndarray, labels: np.ndarray, cls: np.ndarray, names: list[str], buffer: float, where: str
) -> tuple[np.ndarray, int]:
    """Exclude train/validation samples near test samples; raise if a class loses all training data."""
    before = labels
    near = buffer_mask(xy, labels == "test", np.isin(labels, ["train", "validation"]), buffer)
    labels = labels.copy()
    labels[near] = EXCLUDED
    if not np.any(labels == "train"):
        raise InputError(
            f"{where}: split.buffer={buffer:g} removes all {int(np.sum(before == 'train'))} training samples; "
            f"reduce split.buffer (leak-free default: (patch_size//2 + 1/2) pixels) or increase split.block_size"
        )
    for c, name in enumerate(names):
        had = int(np.sum((before == "train") & (cls == c)))
        has = int(np.sum((labels == "train") & (cls == c)))
        if has == 0 and had > 0:
            raise InputError(
                f"{where}: split.buffer={buffer:g} removes all {had} training samples of class {name!r}; "
                f"increase split.block_size, reduce split.buffer, or add labels for {name!r}"
            )
        if has == 0 and np.any(cls == c):
            raise InputError(
                f"{where}: class {name!r} has no training samples (all its labels fell in test blocks); "
                f"add labels for {name!r} elsewhere or reduce split.block_size"
            )
    return labels, int(np.sum(near))


def _merge_audits(audits: list[dict]) -> dict:
    dists = [a["min_train_test_distance"] for a in audits if a["min_train_test_distance"] is not None]
    out: dict[str, Any] = {"min_train_test_distance": min(dists) if dists else None}
    for k in audits[0]:
        if k != "min_train_test_distance":
            out[k] = int(sum(a[k] for a in audits))
    return out


def _audit(inp: SplitInput, labels: np.ndarray) -> dict:
    """The independent leakage audit of one assignment (per-sample split labels, shape (n,))."""
    return audit_split(inp.xy, (inp.rx, inp.ry), inp.patch_size, np.flatnonzero(labels == "train"),
                       np.flatnonzero(labels == "test"), np.flatnonzero(labels == "validation"))


def _buffer_of(inp: SplitInput) -> float:
    return float(inp.cfg.buffer) if inp.cfg.buffer is not None else default_buffer(inp.patch_size, (inp.rx, inp.ry))


def _block_size(inp: SplitInput, buffer: float, k: int) -> float:
    """The configured block size (checked against the labelled extent) or the default."""
    ext_x, ext_y = extent(inp.xy, inp.rx, inp.ry)
    if inp.cfg.block_size is None:
        return default_size(inp.xy, inp.groups, inp.patch_size, (inp.rx, inp.ry), buffer, k=k)
    size = float(inp.cfg.block_size)
    if size >= max(ext_x, ext_y):
        raise InputError(
            f"split.block_size={size:g} is not smaller than the labelled extent "
            f"({ext_x:g} x {ext_y:g} map units): every label would fall in one or very few blocks; "
            f"set a smaller split.block_size or leave it unset for the default"
        )
    return size


def _layout(inp: SplitInput, size: float) -> Layout:
    """Blocks of ``size``: each group goes to the block holding most of its samples."""
    cell, x0, y0, nx = grid(inp.xy, size)
    block = group_blocks(inp.groups, cell)
    unit_ids, unit_of = np.unique(block, return_inverse=True)
    C = np.zeros((unit_ids.size, len(inp.names)), dtype=np.int64)
    np.add.at(C, (unit_of, inp.cls), 1)
    return Layout(size, block, unit_ids, unit_of, C, x0, y0, nx, int(np.unique(inp.groups).size))


def _blocks_frame(inp: SplitInput, lay: Layout, unit_split: list[str], unit_fold: np.ndarray) -> gpd.GeoDataFrame:
    return block_frame(lay.unit_ids, unit_split, unit_fold, lay.C.sum(1), lay.x0, lay.y0, lay.nx, lay.size,
                       inp.crs)


def _buffered(inp: SplitInput, unit_labels: np.ndarray, lay: Layout, buffer: float, where: str,
              audit_where: str) -> tuple[np.ndarray, int, dict]:
    """Per-sample labels from per-unit labels, then the buffer, then the audit (which must be 0)."""
    labels0 = unit_labels.astype(str)[lay.unit_of]
    labels, dropped = _apply_buffer(inp.xy, labels0, inp.cls, inp.names, buffer, where)
    audit = _audit(inp, labels)
    check_no_leak(audit, audit_where)
    return labels, dropped, audit


# ----------------------------------------------------------------------------- strategies


def random_split(samples: pd.DataFrame, fractions: SplitFractions, seed: int) -> Fold:
    """Stratified random pixel split (the leaky contrast).

    Per class (in class-id order) the samples are shuffled with
    ``numpy.random.default_rng(seed)`` and cut by the fractions: a class with
    at least two samples gets at least one test sample, and training keeps at
    least one sample of every class.

    Parameters
    ----------
    samples : DataFrame, n rows
        Needs ``class_id``.
    fractions : SplitFractions
    seed : int

    Returns
    -------
    Fold
        Sorted positions; ``len(train) + len(validation) + len(test) == n``.
    """
    if len(samples) == 0:
        raise InputError("split: there are no labelled samples to split; check the labels file and classes")
    rng = np.random.default_rng(seed)
    cid = samples["class_id"].to_numpy().astype(np.int64)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLIT_NAMES}
    for c in np.unique(cid):
        idx = np.flatnonzero(cid == c)
        idx = idx[rng.permutation(idx.size)]
        n = idx.size
        n_test = int(round(fractions.test * n))
        if n >= 2:
            n_test = max(1, n_test)
        n_test = min(n_test, n - 1)
        n_val = max(min(int(round(fractions.validation * n)), n - 1 - n_test), 0)
        parts["test"].append(idx[:n_test])
        parts["validation"].append(idx[n_test : n_test + n_val])
        parts["train"].append(idx[n_test + n_val :])
    cat = {s: np.sort(np.concatenate(v)).astype(np.int64) for s, v in parts.items()}
    return Fold(train=cat["train"], validation=cat["validation"], test=cat["test"])


def _split_random(inp: SplitInput) -> SplitResult:
    """``random``: stratified random pixel split; audited and reported, never enforced."""
    fold = random_split(inp.samples, inp.cfg.fractions, inp.seed)
    labels = np.empty(inp.n, dtype=object)
    labels[fold.train], labels[fold.validation], labels[fold.test] = "train", "validation", "test"
    labels = labels.astype(str)
    counts = _counts(labels, inp.cls, inp.names)
    report = {"strategy": "random", "block_size": None, "buffer": None, "seed": int(inp.seed),
              "counts": counts, "dropped_by_buffer": 0, "missing_classes": _missing(counts),
              "audit": _audit(inp, labels)}
    gdf = group_frame(inp.xy, inp.groups, labels, inp.rx, inp.ry, inp.crs)
    return SplitResult("random", [fold], labels, np.zeros(inp.n, dtype=np.int64), inp.groups.copy(), gdf, report)


def _split_blocks(inp: SplitInput) -> SplitResult:
    """``blocks``: whole blocks to train/validation/test, stratified; buffer; audit must be 0."""
    buffer = _buffer_of(inp)
    lay = _layout(inp, _block_size(inp, buffer, 5))
    fr = inp.cfg.fractions
    need = 3 if fr.validation > 0 else 2
    U = lay.unit_ids.size
    if U < need:
        raise InputError(
            f"split: the labels fall in only {U} block(s) of {lay.size:g} map units ({lay.n_groups} groups); "
            f"train/validation/test need at least {need}: reduce split.block_size, add label polygons "
            f"in other places, or use split.strategy: random"
        )
    rng = np.random.default_rng(inp.seed)
    lab = assign_units(lay.C, np.array([fr.train, fr.validation, fr.test]), rng, (TRAIN, TEST))
    unit_split = np.array(SPLIT_NAMES, dtype=object)[lab].astype(str)
    labels, dropped, audit = _buffered(inp, unit_split, lay, buffer, "split",
                                       f"split (blocks of {lay.size:g}, buffer {buffer:g})")
    counts = _counts(labels, inp.cls, inp.names)
    report = {"strategy": "blocks", "block_size": lay.size, "buffer": buffer, "seed": int(inp.seed),
              "counts": counts, "dropped_by_buffer": dropped, "missing_classes": _missing(counts, warn=True),
              "audit": audit}
    gdf = _blocks_frame(inp, lay, list(unit_split), np.zeros(U, dtype=np.int64))
    return SplitResult("blocks", [_fold_of(labels)], labels, np.zeros(inp.n, dtype=np.int64), lay.block, gdf,
                       report, block_size=lay.size, buffer=buffer, fold_splits=[labels])


def _kfold_units(inp: SplitInput, lay: Layout, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold per unit (U,): units holding a class found nowhere else are never test (-1)."""
    present = lay.C > 0
    never_test = present[:, present.sum(0) == 1].any(1)
    testable = np.flatnonzero(~never_test)
    if testable.size < k:
        raise InputError(
            f"split: the labels fall in only {testable.size} usable block(s) of {lay.size:g} map units "
            f"({lay.n_groups} groups) but split.k={k} folds need at least {k}: reduce split.k or "
            f"split.block_size, or add label polygons in other places"
        )
    ufold = np.full(lay.unit_ids.size, -1, dtype=np.int64)
    ufold[testable] = assign_kfold(lay.C[testable], k, rng)
    return ufold


def _kfold_report(inp: SplitInput, lay: Layout, buffer: float, k: int, per_fold: list[dict]) -> dict:
    names = inp.names
    return {"strategy": "kfold", "block_size": lay.size, "buffer": buffer, "seed": int(inp.seed), "k": k,
            "counts": per_fold[0]["counts"], "dropped_by_buffer": per_fold[0]["dropped_by_buffer"],
            "missing_classes": {
                "train": sorted({c for p in per_fold for c in p["missing_classes"]["train"]}),
                "test": [c for c in names if not any(p["counts"]["test"][c] for p in per_fold)]},
            "audit": _merge_audits([p["audit"] for p in per_fold]), "folds": per_fold}


def _split_kfold(inp: SplitInput) -> SplitResult:
    """``kfold``: blocks dealt into k folds; in fold i the blocks of fold i are test, a share
    ``fractions.validation`` of the others validation; buffer and audit in every fold."""
    buffer = _buffer_of(inp)
    k = int(inp.cfg.k)
    lay = _layout(inp, _block_size(inp, buffer, k))
    rng = np.random.default_rng(inp.seed)
    ufold = _kfold_units(inp, lay, k, rng)
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
        labels, dropped, audit = _buffered(inp, unit_split, lay, buffer, f"split (kfold, fold {f})",
                                           f"split (kfold fold {f}, blocks of {lay.size:g}, buffer {buffer:g})")
        counts = _counts(labels, inp.cls, inp.names)
        per_fold.append({"fold": f, "counts": counts, "dropped_by_buffer": dropped,
                         "missing_classes": _missing(counts), "audit": audit})
        fold_splits.append(labels)
    report = _kfold_report(inp, lay, buffer, k, per_fold)
    gdf = _blocks_frame(inp, lay, unit_split0, ufold)
    return SplitResult("kfold", [_fold_of(lab) for lab in fold_splits], fold_splits[0], ufold[lay.unit_of],
                       lay.block, gdf, report, block_size=lay.size, buffer=buffer, fold_splits=fold_splits)


#: ``split.strategy`` -> function building the split (the one place to register a strategy).
STRATEGIES: dict[str, Callable[[SplitInput], SplitResult]] = {
    "blocks": _split_blocks,
    "kfold": _split_kfold,
    "random": _split_random,
}


# ----------------------------------------------------------------------------- entry point


def _inputs(samples: pd.DataFrame, cfg: SplitConfig, patch_size: int, res: tuple[float, float], seed: int,
            crs: Any) -> SplitInput:
    """Validate the samples and settings once; every strategy gets the result."""
    _check_samples(samples)
    rx, ry = pixel_size(res)
    if patch_size < 1 or patch_size % 2 == 0:
        raise InputError(f"split: patch size must be a positive odd number, got {patch_size}")
    _, names, cls = _classes(samples)
    return SplitInput(samples=samples, cfg=cfg, patch_size=int(patch_size), rx=rx, ry=ry, seed=int(seed), crs=crs,
                      xy=samples[["x", "y"]].to_numpy(dtype=np.float64),
                      groups=samples["group"].to_numpy().astype(np.int64), cls=cls, names=names)


def make_splits(
    samples: pd.DataFrame,
    cfg: SplitConfig,
    patch_size: int,
    res: tuple[float, float],
    seed: int,
    crs: Any = None,
) -> SplitResult:
    """Split samples into train/validation/test by the configured strategy.

    Parameters
    ----------
    samples : DataFrame, n rows
        Columns ``x``, ``y`` (pixel-centre map coordinates), ``row``, ``col``,
        ``class_id``, ``class_name``, ``group``. Positions (not the index) are
        used throughout.
    cfg : SplitConfig
        ``strategy`` (a key of :data:`STRATEGIES`), ``block_size``, ``buffer``,
        ``fractions``, ``k``.
    patch_size : int
        Patch width k in pixels (odd).
    res : (float, float)
        Pixel size ``(res_x, res_y)`` in map units (sign ignored).
    seed : int
        Seed of ``numpy.random.default_rng``.
    crs : optional
        CRS of the coordinates, attached to ``SplitResult.blocks``.

    Returns
    -------
    SplitResult

    Raises
    ------
    InputError
        Too few groups/blocks for the splits, a block size larger than the
        labelled extent, a buffer that removes all training data (or all of a
        class), missing columns.
    LeakageError
        The independent audit found a patch of one split touching a pixel of
        another (blocks and kfold only).
    """
    inp = _inputs(samples, cfg, patch_size, res, seed, crs)
    return STRATEGIES[cfg.strategy](inp)

"""Spatially disjoint train/validation/test splits shared by every model.

Strategies (``split.strategy``)
-------------------------------
``blocks`` (default)
    A square grid of blocks in map units is laid over the samples; whole blocks
    go to train, validation or test with target fractions (default 70/15/15 of
    the samples), stratified by class. Then a buffer removes training and
    validation samples that lie near a test sample, and the independent audit
    (:mod:`pipeline.split.audit`) must find no patch of one split that contains a
    pixel of another; otherwise :class:`~pipeline.core.errors.LeakageError`.
``kfold``
    Spatial k-fold cross-validation: blocks are dealt into k folds (stratified);
    in fold i the blocks of fold i are test, a share ``fractions.validation`` of
    the remaining blocks is validation, the rest is training; same buffer and
    audit in every fold.
``random``
    Stratified random pixel split: the contrast that is *expected* to leak. Its
    audit is computed and reported, never enforced.
``predefined``
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
Hints
    When a strategy cannot split the input, the error is followed by a change
    that was tried on the same input and works (block size, ``group_by``,
    ``k``, buffer), or by the reason why no spatial split is possible.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from pipeline.core.errors import InputError, LeakageError
from pipeline.split.assign import (
    EXCLUDED,
    SPLIT_NAMES,
    TEST,
    TRAIN,
    assign_kfold,
    assign_units,
    buffer_mask,
    candidate_sizes,
    default_buffer,
    default_size,
    extent,
    grid,
    group_blocks,
    pixel_size,
)
from pipeline.split.audit import audit_split, check_no_leak
from pipeline.split.outputs import (
    block_frame,
    group_frame,
    plot_split_map,
    write_splits_gpkg,
)
from pipeline.split.settings import SplitConfig, SplitFractions

__all__ = [
    "SPLIT_NAMES",
    "STRATEGIES",
    "Fold",
    "SplitResult",
    "audit_scenes",
    "default_block_size",
    "default_buffer",
    "make_splits",
    "plot_split_map",
    "random_split",
    "write_splits_gpkg",
]

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("x", "y", "row", "col", "class_id", "class_name", "group")
MAX_HINT_TRIALS = 24  # split attempts spent looking for a change that works, on the error path only


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
        One fold for ``blocks``, ``random`` and ``predefined``, k folds for ``kfold``.
    split : ndarray of str, shape (n,)
        Per sample ``"train"``, ``"validation"``, ``"test"`` or ``"excluded"``
        (dropped by the buffer); for kfold the assignment of fold 0.
    fold : ndarray of int64, shape (n,)
        kfold: the fold in which the sample is test (-1: never test, for blocks
        holding a class found in one block only); 0 for other strategies.
    block : ndarray of int64, shape (n,)
        Assignment unit of each sample: the block its group belongs to
        (``random``, ``predefined``: the group id; ``group_by: scene``: the scene).
    blocks : GeoDataFrame
        One row per block with columns ``block``, ``split`` (kfold: fold 0),
        ``fold``, ``n_samples``, ``scene`` and a ``geometry`` covering the
        block's samples (``random``/``predefined``: the square envelope of the
        group's pixels, split ``"mixed"`` if the group is spread over several
        splits).
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
    groups: np.ndarray  # (n,) int64, unique across scenes
    cls: np.ndarray  # (n,) int64 index into names
    names: list[str]
    scene: np.ndarray  # (n,) int64 index into scene_names
    scene_names: list[str]
    quiet: bool = False  # hint trials: no warnings

    @property
    def n(self) -> int:
        return len(self.samples)


@dataclass(frozen=True)
class Layout:
    """Assignment units at one block size: the unit of each sample and samples per unit and class."""

    size: float | None  # None: group_by scene (no grid)
    block: np.ndarray  # (n,) unit id of each sample
    cell: np.ndarray | None  # (n,) grid cell of each sample (drawing); None without a grid
    grid: tuple[float, float, int] | None  # x0, y0, nx
    unit_ids: np.ndarray  # (U,) sorted unit ids
    unit_of: np.ndarray  # (n,) index into unit_ids
    C: np.ndarray  # (U, K) samples per unit and class
    n_groups: int
    sub_classes: tuple[int, ...] = ()  # classes whose polygons were cut into sub-blocks


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


def _scenes(samples: pd.DataFrame) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Scene code per sample (n,), scene names, and group ids made unique across scenes (n,)."""
    groups = samples["group"].to_numpy().astype(np.int64)
    if "scene" not in samples.columns:
        return np.zeros(len(samples), dtype=np.int64), ["scene"], groups
    names, code = np.unique(samples["scene"].astype(str).to_numpy(), return_inverse=True)
    if names.size > 1:  # the same group id in two scenes is two groups
        groups = pd.MultiIndex.from_arrays([code, groups]).factorize()[0].astype(np.int64)
    return code.astype(np.int64), [str(v) for v in names], groups


def default_block_size(
    samples: pd.DataFrame, patch_size: int, res: tuple[float, float], buffer: float, k: int = 5
) -> float:
    """Default block size in map units for polygons kept whole (see the module docstring).

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
    groups = samples["group"].to_numpy()
    rx, ry = pixel_size(res)
    pix = max(rx, ry)
    return default_size(
        lambda s: len(np.unique(group_blocks(groups, grid(xy, s)[0]))),
        patch_size * pix + buffer,
        pix,
        max(extent(xy, rx, ry)),
        k,
    )


def _counts(labels: np.ndarray, cls: np.ndarray, names: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for s in SPLIT_NAMES:
        bc = np.bincount(cls[labels == s], minlength=len(names))
        out[s] = {names[i]: int(bc[i]) for i in range(len(names))}
    return out


def _missing(counts: dict[str, dict[str, int]]) -> dict[str, list[str]]:
    return {s: [c for c, n in counts[s].items() if n == 0] for s in ("train", "test")}


def _fold_of(labels: np.ndarray) -> Fold:
    return Fold(
        train=np.flatnonzero(labels == "train").astype(np.int64),
        validation=np.flatnonzero(labels == "validation").astype(np.int64),
        test=np.flatnonzero(labels == "test").astype(np.int64),
    )


def _apply_buffer(inp: SplitInput, labels: np.ndarray, buffer: float, where: str) -> tuple[np.ndarray, int]:
    """Exclude train/validation samples near test samples of the same scene; raise if a class
    loses all training data."""
    before = labels
    near = buffer_mask(inp.xy, labels == "test", np.isin(labels, ["train", "validation"]), buffer, inp.scene)
    labels = labels.copy()
    labels[near] = EXCLUDED
    if not np.any(labels == "train"):
        raise InputError(
            f"{where}: split.buffer={buffer:g} removes all {int(np.sum(before == 'train'))} training samples"
        )
    for c, name in enumerate(inp.names):
        had = int(np.sum((before == "train") & (inp.cls == c)))
        has = int(np.sum((labels == "train") & (inp.cls == c)))
        if has == 0 and had > 0:
            raise InputError(f"{where}: split.buffer={buffer:g} removes all {had} training samples of class {name!r}")
        if has == 0 and np.any(inp.cls == c):
            raise InputError(f"{where}: class {name!r} has no training samples (all its labels fell in test blocks)")
    return labels, int(np.sum(near))


def _merge_audits(audits: list[dict]) -> dict:
    dists = [a["min_train_test_distance"] for a in audits if a["min_train_test_distance"] is not None]
    out: dict[str, Any] = {"min_train_test_distance": min(dists) if dists else None}
    for k in audits[0]:
        if k != "min_train_test_distance":
            out[k] = int(sum(a[k] for a in audits))
    return out


def audit_scenes(xy: np.ndarray, res: tuple[float, float], patch_size: int, fold: Fold, scene: Any = None) -> dict:
    """The independent leakage audit (:func:`pipeline.split.audit.audit_split`) of ``fold``, scene by
    scene: pixels of two scenes (two dates of one place) are never compared.

    Parameters
    ----------
    xy : ndarray, shape (n, 2)
    res : (float, float)
    patch_size : int
    fold : Fold
        Positions into ``xy``.
    scene : array_like, shape (n,), optional
        Scene of each sample; None: one scene.
    """
    codes = np.zeros(len(xy), dtype=np.int64) if scene is None else pd.factorize(np.asarray(scene))[0]
    audits = []
    for sc in np.unique(codes) if len(codes) else [0]:
        keep = {
            k: np.asarray(getattr(fold, k))[codes[np.asarray(getattr(fold, k), dtype=np.int64)] == sc]
            for k in ("train", "validation", "test")
        }
        audits.append(audit_split(xy, res, patch_size, keep["train"], keep["test"], keep["validation"]))
    return _merge_audits(audits)


def _audit(inp: SplitInput, labels: np.ndarray) -> dict:
    """The leakage audit of one assignment (labels: shape (n,)), scene by scene."""
    return audit_scenes(inp.xy, (inp.rx, inp.ry), inp.patch_size, _fold_of(labels), inp.scene)


def _buffer_of(inp: SplitInput) -> float:
    return float(inp.cfg.buffer) if inp.cfg.buffer is not None else default_buffer(inp.patch_size, (inp.rx, inp.ry))


# ----------------------------------------------------------------------------- assignment units


def _grid_cells(inp: SplitInput, size: float) -> tuple[np.ndarray, np.ndarray, tuple[float, float, int]]:
    """Per sample the block id keyed by scene (n,), the plain grid cell (n,) and the grid (x0, y0, nx)."""
    cell, x0, y0, nx = grid(inp.xy, size)
    return inp.scene * (int(cell.max()) + 1) + cell, cell, (x0, y0, nx)


def _unit_blocks(inp: SplitInput, sblock: np.ndarray, sub: tuple[int, ...]) -> np.ndarray:
    """Block of each sample's group, where the polygons of classes ``sub`` are cut at block edges."""
    keys = inp.groups
    cut = np.isin(inp.cls, sub) if inp.cfg.group_by != "block" else np.ones(inp.n, dtype=bool)
    if cut.any():  # group = polygon x block for the cut samples
        keys = pd.MultiIndex.from_arrays([cut, inp.groups, np.where(cut, sblock, -1)]).factorize()[0]
    return group_blocks(keys, sblock)


def _layout(inp: SplitInput, size: float, sub: tuple[int, ...] = ()) -> Layout:
    """Units at block size ``size``: each group (polygon, or polygon x block) goes to the block
    holding most of its samples."""
    sblock, cell, gridspec = _grid_cells(inp, size)
    block = _unit_blocks(inp, sblock, sub)
    return _units(inp, block, size, cell, gridspec, sub)


def _units(
    inp: SplitInput,
    block: np.ndarray,
    size: float | None,
    cell: np.ndarray | None,
    gridspec: tuple[float, float, int] | None,
    sub: tuple[int, ...],
) -> Layout:
    unit_ids, unit_of = np.unique(block, return_inverse=True)
    C = np.zeros((unit_ids.size, len(inp.names)), dtype=np.int64)
    np.add.at(C, (unit_of, inp.cls), 1)
    return Layout(size, block, cell, gridspec, unit_ids, unit_of, C, int(np.unique(inp.groups).size), sub)


def _scene_layout(inp: SplitInput) -> Layout:
    """``group_by: scene``: every scene is one unit."""
    return _units(inp, inp.scene.copy(), None, None, None, ())


def _block_size(inp: SplitInput, buffer: float, k: int, sub: tuple[int, ...]) -> float:
    """The configured block size (checked against the labelled extent) or the default."""
    ext_x, ext_y = extent(inp.xy, inp.rx, inp.ry)
    if inp.cfg.block_size is None:
        pix = max(inp.rx, inp.ry)
        return default_size(
            lambda s: int(np.unique(_unit_blocks(inp, _grid_cells(inp, s)[0], sub)).size),
            inp.patch_size * pix + buffer,
            pix,
            max(ext_x, ext_y),
            k,
        )
    size = float(inp.cfg.block_size)
    if size >= max(ext_x, ext_y):
        raise InputError(
            f"split.block_size={size:g} is not smaller than the labelled extent "
            f"({ext_x:g} x {ext_y:g} map units): every label would fall in one or very few blocks"
        )
    return size


def _cuttable(inp: SplitInput, lay: Layout, classes: Any) -> tuple[int, ...]:
    """Of ``classes``, those not cut yet whose samples span two blocks of ``lay`` (cutting helps)."""
    if lay.size is None:
        raise ValueError("_cuttable: a layout by scene has no blocks to cut polygons at")
    sblock = _grid_cells(inp, float(lay.size))[0]
    return tuple(int(c) for c in classes if c not in lay.sub_classes and np.unique(sblock[inp.cls == c]).size >= 2)


def _plan(inp: SplitInput, buffer: float, k: int, force: tuple[int, ...] = ()) -> Layout:
    """The assignment units for ``split.group_by`` (``auto``: cut the polygons of classes found in
    fewer than two units, and of ``force``; the block size is chosen again after a cut)."""
    gb = inp.cfg.group_by
    if gb == "scene":
        return _scene_layout(inp)
    sub: tuple[int, ...] = tuple(range(len(inp.names))) if gb == "block" else tuple(force)
    lay = _layout(inp, _block_size(inp, buffer, k, sub), sub)
    for _ in range(3):
        few = _cuttable(inp, lay, np.flatnonzero((lay.C > 0).sum(0) < 2)) if gb == "auto" else ()
        if not few:
            break
        sub = tuple(sorted(set(sub) | set(few)))
        lay = _layout(inp, _block_size(inp, buffer, k, sub), sub)
    return lay


def _warn_sub(inp: SplitInput, lay: Layout) -> None:
    if inp.cfg.group_by != "auto" or not lay.sub_classes or inp.quiet:
        return
    log.warning(
        "split: class(es) %s have too few polygons (or blocks) to reach both train and test, so their polygons "
        "are cut into sub-blocks of %g map units (group = polygon x block): their test measures "
        "generalisation to unseen parts of the same polygons, separated by the buffer, which is weaker "
        "evidence than unseen polygons. Set split.group_by: polygon | block | scene to choose otherwise",
        ", ".join(repr(inp.names[c]) for c in lay.sub_classes),
        lay.size,
    )


def _blocks_frame(inp: SplitInput, lay: Layout, unit_split: list[str], unit_fold: np.ndarray) -> gpd.GeoDataFrame:
    first = np.unique(lay.unit_of, return_index=True)[1]  # units never span two scenes
    scene = [inp.scene_names[int(c)] for c in inp.scene[first]]
    return block_frame(
        inp.xy,
        lay.unit_of,
        lay.unit_ids,
        unit_split,
        unit_fold,
        scene,
        lay.cell,
        lay.grid,
        lay.size,
        (inp.rx, inp.ry),
        inp.crs,
    )


def _sub_report(inp: SplitInput, lay: Layout) -> dict:
    return {"group_by": inp.cfg.group_by, "sub_blocked_classes": [inp.names[c] for c in lay.sub_classes]}


def _buffered(
    inp: SplitInput, unit_labels: np.ndarray, lay: Layout, buffer: float, where: str
) -> tuple[np.ndarray, int, dict]:
    """Per-sample labels from per-unit labels, then the buffer, then the audit (which must be 0)."""
    labels0 = unit_labels.astype(str)[lay.unit_of]
    labels, dropped = _apply_buffer(inp, labels0, buffer, where)
    audit = _audit(inp, labels)
    size = "whole scenes" if lay.size is None else f"blocks of {lay.size:g}"
    check_no_leak(audit, f"{where} ({size}, buffer {buffer:g})")
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


def _as_given(inp: SplitInput, strategy: str, labels: np.ndarray, extra: dict) -> SplitResult:
    """A split that is reported but not enforced (random, predefined): audit, counts, group squares."""
    counts = _counts(labels, inp.cls, inp.names)
    audit = _audit(inp, labels)
    report = {
        "strategy": strategy,
        "block_size": None,
        "buffer": None,
        "seed": int(inp.seed),
        "counts": counts,
        "dropped_by_buffer": 0,
        "missing_classes": _missing(counts),
        "audit": audit,
        "group_by": None,
        "sub_blocked_classes": [],
        **extra,
    }
    gdf = group_frame(inp.xy, inp.groups, labels, inp.rx, inp.ry, inp.crs)
    return SplitResult(
        strategy, [_fold_of(labels)], labels, np.zeros(inp.n, dtype=np.int64), inp.groups.copy(), gdf, report
    )


def _split_random(inp: SplitInput) -> SplitResult:
    """``random``: stratified random pixel split; audited and reported, never enforced."""
    fold = random_split(inp.samples, inp.cfg.fractions, inp.seed)
    labels = np.empty(inp.n, dtype=object)
    labels[fold.train], labels[fold.validation], labels[fold.test] = "train", "validation", "test"
    return _as_given(inp, "random", labels.astype(str), {})


def _split_predefined(inp: SplitInput) -> SplitResult:
    """``predefined``: the user's split column (or scene lists), as given; audited, never enforced."""
    from pipeline.split.predefined import predefined_labels

    labels, source = predefined_labels(inp.samples, inp.cfg)
    res = _as_given(inp, "predefined", labels, {"source": source})
    leaks = sum(int(v) for k, v in res.report["audit"].items() if k != "min_train_test_distance")
    if leaks and not inp.quiet:
        a = res.report["audit"]
        log.warning(
            "split (predefined, %s): the leakage audit finds %d training patches touching test pixels "
            "and %d test patches touching training pixels: accuracy on this split is inflated by spatial "
            "leakage",
            source,
            a["train_patches_touching_test_pixels"],
            a["test_patches_touching_train_pixels"],
        )
    return res


def _assign_blocks(inp: SplitInput, buffer: float) -> tuple[Layout, np.ndarray]:
    """Units and their split (U,); ``auto`` cuts, and assigns again, classes left without a test unit."""
    fr = inp.cfg.fractions
    fractions = np.array([fr.train, fr.validation, fr.test])
    need = 3 if fr.validation > 0 else 2
    force: tuple[int, ...] = ()
    for _ in range(2):
        lay = _plan(inp, buffer, 5, force)
        U = lay.unit_ids.size
        if U < need:
            what = "scene(s)" if lay.size is None else f"block(s) of {lay.size:g} map units ({lay.n_groups} groups)"
            raise InputError(f"split: the labels fall in only {U} {what}; train/validation/test need at least {need}")
        lab = assign_units(lay.C, fractions, np.random.default_rng(inp.seed), (TRAIN, TEST))
        untested = np.flatnonzero(lay.C[lab == TEST].sum(0) == 0)
        force = _cuttable(inp, lay, untested) if inp.cfg.group_by == "auto" and lay.size else ()
        if not force:
            break
        force = tuple(sorted(set(force) | set(lay.sub_classes)))
    _warn_sub(inp, lay)
    return lay, lab


def _split_blocks(inp: SplitInput) -> SplitResult:
    """``blocks``: whole units to train/validation/test, stratified; buffer; audit must be 0."""
    buffer = _buffer_of(inp)
    lay, lab = _assign_blocks(inp, buffer)
    U = lay.unit_ids.size
    unit_split = np.array(SPLIT_NAMES, dtype=object)[lab].astype(str)
    labels, dropped, audit = _buffered(inp, unit_split, lay, buffer, "split")
    counts = _counts(labels, inp.cls, inp.names)
    report = {
        "strategy": "blocks",
        "block_size": lay.size,
        "buffer": buffer,
        "seed": int(inp.seed),
        "counts": counts,
        "dropped_by_buffer": dropped,
        "missing_classes": _missing(counts),
        "audit": audit,
        **_sub_report(inp, lay),
    }
    if report["missing_classes"]["test"] and not inp.quiet:
        _warn_untested(inp, report["missing_classes"]["test"])
    gdf = _blocks_frame(inp, lay, list(unit_split), np.zeros(U, dtype=np.int64))
    return SplitResult(
        "blocks",
        [_fold_of(labels)],
        labels,
        np.zeros(inp.n, dtype=np.int64),
        lay.block,
        gdf,
        report,
        block_size=lay.size,
        buffer=buffer,
        fold_splits=[labels],
    )


def _kfold_units(lay: Layout, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold per unit (U,): units holding a class found nowhere else are never test (-1)."""
    present = lay.C > 0
    never_test = present[:, present.sum(0) == 1].any(1)
    testable = np.flatnonzero(~never_test)
    if testable.size < k:
        what = "scene(s)" if lay.size is None else f"block(s) of {lay.size:g} map units ({lay.n_groups} groups)"
        raise InputError(
            f"split: the labels fall in only {testable.size} usable {what} but split.k={k} folds need at least {k}"
        )
    ufold = np.full(lay.unit_ids.size, -1, dtype=np.int64)
    ufold[testable] = assign_kfold(lay.C[testable], k, rng)
    return ufold


def _assign_folds(
    inp: SplitInput, buffer: float, k: int, deal: int = 0
) -> tuple[Layout, np.ndarray, np.random.Generator]:
    """Units, their fold (U,) and the generator to continue with; ``auto`` cuts, and deals again,
    classes whose units all fell in one fold (that fold would have no training data for them).
    ``deal`` > 0 draws another dealing from the same seed (see :data:`KFOLD_DEALS`)."""
    force: tuple[int, ...] = ()
    for _ in range(2):
        lay = _plan(inp, buffer, k, force)
        rng = np.random.default_rng(inp.seed if deal == 0 else [inp.seed, deal])
        ufold = _kfold_units(lay, k, rng)
        present = lay.C > 0
        one_fold = [
            c
            for c in range(present.shape[1])
            if np.unique(ufold[present[:, c]]).size == 1 and ufold[present[:, c]][0] >= 0
        ]
        force = _cuttable(inp, lay, one_fold) if inp.cfg.group_by == "auto" and lay.size else ()
        if not force:
            break
        force = tuple(sorted(set(force) | set(lay.sub_classes)))
    return lay, ufold, rng


def _kfold_report(inp: SplitInput, lay: Layout, buffer: float, k: int, per_fold: list[dict]) -> dict:
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
        "audit": _merge_audits([p["audit"] for p in per_fold]),
        "folds": per_fold,
        **_sub_report(inp, lay),
    }


#: Dealings of the units into folds tried before kfold gives up. A dealing can leave a class
#: without training data in one fold once the buffer has cleared the ground around that fold's
#: test units (a small polygon beside a test block); another dealing of the same units, drawn
#: from the same seed, usually does not. The first dealing is the one runs have always used.
KFOLD_DEALS = 8


def _split_kfold(inp: SplitInput) -> SplitResult:
    """``kfold``: units dealt into k folds; in fold i the units of fold i are test, a share
    ``fractions.validation`` of the others validation; buffer and audit in every fold."""
    buffer = _buffer_of(inp)
    first: InputError | None = None
    for deal in range(KFOLD_DEALS):
        try:
            return _kfold_dealt(inp, buffer, deal)
        except _FoldWithoutTraining as e:
            first = first or e
    assert first is not None
    raise InputError(str(first)) from None


class _FoldWithoutTraining(InputError):
    """The buffer (or the dealing) left a class, or everything, without training data in a fold."""


def _kfold_dealt(inp: SplitInput, buffer: float, deal: int) -> SplitResult:
    k = int(inp.cfg.k)
    lay, ufold, rng = _assign_folds(inp, buffer, k, deal)
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
            labels, dropped, audit = _buffered(inp, unit_split, lay, buffer, f"split (kfold, fold {f})")
        except LeakageError:
            raise  # a leak is never the dealing's fault
        except InputError as e:
            raise _FoldWithoutTraining(str(e)) from None
        counts = _counts(labels, inp.cls, inp.names)
        per_fold.append(
            {
                "fold": f,
                "counts": counts,
                "dropped_by_buffer": dropped,
                "missing_classes": _missing(counts),
                "audit": audit,
            }
        )
        fold_splits.append(labels)
    _warn_sub(inp, lay)
    report = _kfold_report(inp, lay, buffer, k, per_fold)
    if deal:
        report["deal"] = deal
    if report["missing_classes"]["test"] and not inp.quiet:
        _warn_untested(inp, report["missing_classes"]["test"])
    gdf = _blocks_frame(inp, lay, unit_split0, ufold)
    return SplitResult(
        "kfold",
        [_fold_of(lab) for lab in fold_splits],
        fold_splits[0],
        ufold[lay.unit_of],
        lay.block,
        gdf,
        report,
        block_size=lay.size,
        buffer=buffer,
        fold_splits=fold_splits,
    )


#: ``split.strategy`` -> function building the split (the one place to register a strategy).
STRATEGIES: dict[str, Callable[[SplitInput], SplitResult]] = {
    "blocks": _split_blocks,
    "kfold": _split_kfold,
    "random": _split_random,
    "predefined": _split_predefined,
}


# ----------------------------------------------------------------------------- hints


def _candidate_changes(inp: SplitInput) -> Iterator[dict[str, Any]]:
    """Config changes worth trying on an input that cannot be split, most faithful first."""
    cfg = inp.cfg
    default_buf = default_buffer(inp.patch_size, (inp.rx, inp.ry))
    if cfg.buffer is not None and cfg.buffer < default_buf:  # a leaking buffer: the default is leak-free
        yield {"buffer": None}
    if cfg.group_by == "scene":
        yield {"group_by": "auto"}
    pix = max(inp.rx, inp.ry)
    sizes = candidate_sizes(inp.patch_size * pix + _buffer_of(inp), pix, max(extent(inp.xy, inp.rx, inp.ry)))
    sizes = [s for s in sizes[::-1] if s != cfg.block_size]  # largest first: the largest that works
    for gb in dict.fromkeys([cfg.group_by if cfg.group_by != "scene" else "auto", "block"]):
        if gb != cfg.group_by and gb != "auto":
            yield {"group_by": gb}
        for s in sizes:
            yield {"group_by": gb, "block_size": s} if gb != cfg.group_by else {"block_size": s}
    if cfg.buffer is not None and cfg.buffer > default_buf:
        yield {"buffer": None}
    if cfg.strategy == "kfold":
        for k in range(cfg.k - 1, 1, -1):
            yield {"k": k}


def _works(inp: SplitInput, change: dict[str, Any]) -> tuple[bool, bool]:
    """(the split succeeds, and every class is in train and test) after applying ``change``."""
    trial = replace(inp, cfg=inp.cfg.model_copy(update=change), quiet=True)
    try:
        res = STRATEGIES[trial.cfg.strategy](trial)
    except InputError:
        return False, False
    return True, not any(res.report["missing_classes"].values())


def _too_compact(inp: SplitInput, classes: list[int] | None = None) -> tuple[list[str], float]:
    """Classes whose labels span less than two blocks of the smallest admissible size, and that size."""
    pix = max(inp.rx, inp.ry)
    s0 = inp.patch_size * pix + _buffer_of(inp)
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


def _find_change(inp: SplitInput, complete_only: bool, budget: int = MAX_HINT_TRIALS) -> dict[str, Any] | None:
    """The first candidate change (at most ``budget`` tried) after which the split works and every
    class is in train and test; failing that (unless ``complete_only``), the first that works."""
    fallback = None
    for i, change in enumerate(_candidate_changes(inp)):
        if i >= budget:
            break
        ok, complete = _works(inp, change)
        if ok and complete:
            return change
        if ok and fallback is None and not complete_only:
            fallback = change
    return fallback


def _sets(change: dict[str, Any]) -> str:
    return " ".join(
        f"--set split.{k}={'null' if v is None else f'{v:g}' if isinstance(v, float) else v}" for k, v in change.items()
    )


def _hint(inp: SplitInput) -> str:
    """A change tried on this very input that makes the split work, or why none can."""
    change = _find_change(inp, complete_only=False)
    return f"tried on this input, this works: {_sets(change)}" if change else _no_split_reason(inp)


def _warn_untested(inp: SplitInput, names: list[str]) -> None:
    """Classes without test samples: one warning with a change that gives every class a test, if any."""
    ids = [inp.names.index(n) for n in names]
    hopeless = len(_too_compact(inp, ids)[0]) == len(ids)  # no block size can help: spare the trials
    change = None if hopeless else _find_change(inp, complete_only=True, budget=MAX_HINT_TRIALS // 2)
    fix = (
        f"tried on this input, this gives every class a test: {_sets(change)}" if change else _no_split_reason(inp, ids)
    )
    log.warning(
        "split: class(es) %s have no test samples, so their accuracy cannot be measured; %s",
        ", ".join(map(repr, names)),
        fix,
    )


# ----------------------------------------------------------------------------- entry point


def _inputs(
    samples: pd.DataFrame, cfg: SplitConfig, patch_size: int, res: tuple[float, float], seed: int, crs: Any
) -> SplitInput:
    """Validate the samples and settings once; every strategy gets the result."""
    _check_samples(samples)
    rx, ry = pixel_size(res)
    if patch_size < 1 or patch_size % 2 == 0:
        raise InputError(f"split: patch size must be a positive odd number, got {patch_size}")
    _, names, cls = _classes(samples)
    scene, scene_names, groups = _scenes(samples)
    if cfg.group_by == "scene" and cfg.strategy in ("blocks", "kfold") and "scene" not in samples.columns:
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
    )


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

    Returns
    -------
    SplitResult

    Raises
    ------
    InputError
        The strategy cannot split this input (the message ends with a change
        that was tried and works, or why no spatial split is possible), or
        missing columns.
    LeakageError
        The independent audit found a patch of one split touching a pixel of
        another (blocks and kfold only).
    """
    inp = _inputs(samples, cfg, patch_size, res, seed, crs)
    try:
        return STRATEGIES[cfg.strategy](inp)
    except InputError as e:
        if cfg.strategy not in ("blocks", "kfold"):
            raise
        raise type(e)(f"{e}; {_hint(inp)}") from None

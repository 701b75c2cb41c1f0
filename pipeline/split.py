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
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.spatial import cKDTree

from pipeline.atomic import atomic_path
from pipeline.audit import audit_split, check_no_leak
from pipeline.config import SplitConfig, SplitFractions
from pipeline.errors import InputError

__all__ = [
    "Fold",
    "SplitResult",
    "make_splits",
    "random_split",
    "default_buffer",
    "default_block_size",
    "write_splits_gpkg",
    "plot_split_map",
    "SPLIT_NAMES",
]

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "validation", "test")
EXCLUDED = "excluded"
TRAIN, VAL, TEST = 0, 1, 2
TARGET_UNITS = 50  # blocks wanted for stratification when choosing the default block size
REQUIRED_COLUMNS = ("x", "y", "row", "col", "class_id", "class_name", "group")
SPLIT_COLORS = {"train": "#1f77b4", "validation": "#ff7f0e", "test": "#d62728", EXCLUDED: "#7f7f7f",
                "mixed": "#9467bd", "never-test": "#2ca02c"}


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
        ``"blocks"``, ``"kfold"`` or ``"random"``.
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


def _res(res: tuple[float, float]) -> tuple[float, float]:
    rx, ry = abs(float(res[0])), abs(float(res[1]))
    if not (rx > 0 and ry > 0):
        raise InputError(f"split: pixel size must be positive, got {res}")
    return rx, ry


def default_buffer(patch_size: int, res: tuple[float, float]) -> float:
    """Leak-free default buffer ``(k // 2 + 1/2) * max(|res_x|, |res_y|)`` in map units."""
    rx, ry = _res(res)
    return float((patch_size // 2 + 0.5) * max(rx, ry))


def _classes(samples: pd.DataFrame) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Sorted class ids, their names, and per-sample class index (shape (n,))."""
    cid = samples["class_id"].to_numpy().astype(np.int64)
    ids, inv = np.unique(cid, return_inverse=True)
    first = pd.Series(samples["class_name"].astype(str).to_numpy()).groupby(cid).first()
    names = [str(first.loc[i]) for i in ids]
    return ids, names, inv.astype(np.int64)


def _grid(xy: np.ndarray, size: float) -> tuple[np.ndarray, float, float, int]:
    """Block id per sample (shape (n,)), grid anchor x0, y0 and number of columns."""
    x0 = math.floor(float(xy[:, 0].min()) / size) * size
    y0 = math.floor(float(xy[:, 1].min()) / size) * size
    bx = np.floor((xy[:, 0] - x0) / size).astype(np.int64)
    by = np.floor((xy[:, 1] - y0) / size).astype(np.int64)
    nx = int(bx.max()) + 1
    return by * nx + bx, x0, y0, nx


def _group_blocks(groups: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Per sample, the block holding most samples of its group (ties: smallest block id)."""
    df = pd.DataFrame({"g": groups, "b": cell})
    cnt = df.groupby(["g", "b"], sort=True).size().reset_index(name="n")
    cnt = cnt.sort_values(["g", "n", "b"], ascending=[True, False, True], kind="mergesort")
    best = cnt.drop_duplicates("g", keep="first").set_index("g")["b"]
    return best.reindex(groups).to_numpy().astype(np.int64)


def _extent(xy: np.ndarray, rx: float, ry: float) -> tuple[float, float]:
    return float(np.ptp(xy[:, 0]) + rx), float(np.ptp(xy[:, 1]) + ry)


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
    rx, ry = _res(res)
    pix = max(rx, ry)
    xy = samples[["x", "y"]].to_numpy(dtype=np.float64)
    groups = samples["group"].to_numpy()
    s0 = patch_size * pix + buffer
    ext = max(_extent(xy, rx, ry))
    cands: list[float] = []
    j = 0
    while True:
        s = math.ceil(s0 * math.sqrt(2) ** j / pix - 1e-9) * pix
        if j > 0 and s >= ext:
            break
        if not cands or s > cands[-1]:
            cands.append(float(s))
        j += 1
        if j > 60:
            break
    units = [len(np.unique(_group_blocks(groups, _grid(xy, s)[0]))) for s in cands]
    want = min(max(TARGET_UNITS, 5 * k), units[0])
    ok = [s for s, u in zip(cands, units) if u >= want]
    return ok[-1] if ok else cands[0]


def _cost(cur: np.ndarray, targets: np.ndarray, class_tot: np.ndarray, n_tot: float) -> float:
    """Squared relative deviation of per-class and overall counts from the targets."""
    per_class = (cur - targets) / np.maximum(class_tot, 1.0)[None, :]
    overall = (cur.sum(1) - targets.sum(1)) / max(n_tot, 1.0)
    return float(np.sum(per_class**2) + cur.shape[1] * np.sum(overall**2))


def _pick(cands: np.ndarray, sizes: np.ndarray, room: float, rng: np.random.Generator) -> int:
    """A candidate unit: random among those that fit in ``room``, else the smallest."""
    fit = cands[sizes[cands] <= room]
    if fit.size:
        return int(fit[rng.integers(fit.size)])
    return int(cands[np.lexsort((cands, sizes[cands]))[0]])


def _place_rest(lab: np.ndarray, cur: np.ndarray, C: np.ndarray, targets: np.ndarray,
                rng: np.random.Generator, allowed: list[int]) -> None:
    """Place every unassigned unit (``lab < 0``), largest first (random order among equal sizes),
    into the allowed split or fold whose per-class counts then come closest to the targets.
    Updates ``lab`` (U,) and ``cur`` (splits, classes) in place."""
    sizes = C.sum(1)
    class_tot = C.sum(0).astype(np.float64)
    rest = np.flatnonzero(lab < 0)
    rest = rest[rng.permutation(rest.size)]
    rest = rest[np.argsort(-sizes[rest], kind="stable")]
    for u in rest:
        best, best_cost = allowed[0], math.inf
        for s in allowed:
            cur[s] += C[u]
            cost = _cost(cur, targets, class_tot, class_tot.sum())
            cur[s] -= C[u]
            if cost < best_cost - 1e-12:
                best, best_cost = s, cost
        lab[u] = best
        cur[best] += C[u]


def _assign_units(
    C: np.ndarray, fractions: np.ndarray, rng: np.random.Generator, required: tuple[int, ...]
) -> np.ndarray:
    """Assign units to splits.

    Parameters
    ----------
    C : ndarray, shape (U, K)
        Samples per unit and class.
    fractions : ndarray, shape (S,)
        Target share of the samples per split.
    rng : Generator
    required : tuple of int
        Splits in which every class should appear, in priority order; a class
        present in one unit only goes to ``required[0]``.

    Returns
    -------
    ndarray of int64, shape (U,)
        Split index per unit.
    """
    U, K = C.shape
    S = len(fractions)
    class_tot = C.sum(0).astype(np.float64)
    targets = fractions[:, None] * class_tot[None, :]
    cur = np.zeros((S, K))
    lab = np.full(U, -1, dtype=np.int64)

    def put(u: int, s: int) -> None:
        lab[u] = s
        cur[s] += C[u]

    present = C > 0
    n_units = present.sum(0)
    for c in np.lexsort((np.arange(K), n_units)):  # rarest class first
        units_c = np.flatnonzero(present[:, c])
        if units_c.size == 0:
            continue
        if units_c.size == 1:
            if lab[units_c[0]] < 0:
                put(int(units_c[0]), required[0])
            continue
        for s in required:
            if np.any(lab[units_c] == s):
                continue
            free = units_c[lab[units_c] < 0]
            if free.size == 0:
                continue
            # the free unit that brings the counts closest to the targets (random among ties)
            free = free[rng.permutation(free.size)]
            costs = []
            for u in free:
                cur[s] += C[u]
                costs.append(_cost(cur, targets, class_tot, class_tot.sum()))
                cur[s] -= C[u]
            put(int(free[int(np.argmin(costs))]), s)

    _place_rest(lab, cur, C, targets, rng, [s for s in range(S) if fractions[s] > 0])

    # every split with a positive target gets at least one unit if that is possible
    for s in range(S):
        if fractions[s] <= 0 or np.any(lab == s):
            continue
        best_u, best_key = -1, None
        for u in range(U):
            src = lab[u]
            if np.sum(lab == src) < 2:
                continue
            # would moving u lose a class from a required split?
            others = present[(lab == src) & (np.arange(U) != u)].any(0)
            breaks = int(np.sum(present[u] & ~others)) if src in required else 0
            cur[src] -= C[u]
            cur[s] += C[u]
            cost = _cost(cur, targets, class_tot, class_tot.sum())
            cur[s] -= C[u]
            cur[src] += C[u]
            key = (breaks, cost, u)
            if best_key is None or key < best_key:
                best_u, best_key = u, key
        if best_u >= 0:
            cur[lab[best_u]] -= C[best_u]
            put(best_u, s)
    return lab


def _buffer_mask(xy: np.ndarray, test_mask: np.ndarray, cand_mask: np.ndarray, buffer: float) -> np.ndarray:
    """Candidates (shape (n,) bool) lying at Chebyshev distance <= buffer from a test sample."""
    out = np.zeros(len(xy), dtype=bool)
    if buffer < 0 or not test_mask.any() or not cand_mask.any():
        return out
    cand = np.flatnonzero(cand_mask)
    tree = cKDTree(xy[test_mask])
    n = tree.query_ball_point(xy[cand], r=buffer * (1 + 1e-9) + 1e-9, p=np.inf, return_length=True)
    out[cand[np.asarray(n) > 0]] = True
    return out


def _counts(labels: np.ndarray, cls: np.ndarray, names: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for s in SPLIT_NAMES:
        m = labels == s
        bc = np.bincount(cls[m], minlength=len(names))
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
    before = labels.copy()
    near = _buffer_mask(xy, labels == "test", np.isin(labels, ["train", "validation"]), buffer)
    labels = labels.copy()
    labels[near] = EXCLUDED
    n_train = int(np.sum(labels == "train"))
    if n_train == 0:
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


def _block_frame(
    unit_ids: np.ndarray, unit_split: list[str], unit_fold: np.ndarray, unit_n: np.ndarray,
    x0: float, y0: float, nx: int, size: float, crs: Any,
) -> gpd.GeoDataFrame:
    bx = unit_ids % nx
    by = unit_ids // nx
    geom = shapely.box(x0 + bx * size, y0 + by * size, x0 + (bx + 1) * size, y0 + (by + 1) * size)
    return gpd.GeoDataFrame(
        {"block": unit_ids.astype(np.int64), "split": list(unit_split), "fold": unit_fold.astype(np.int64),
         "n_samples": unit_n.astype(np.int64)},
        geometry=geom, crs=crs,
    )


def _merge_audits(audits: list[dict]) -> dict:
    dists = [a["min_train_test_distance"] for a in audits if a["min_train_test_distance"] is not None]
    out: dict[str, Any] = {"min_train_test_distance": min(dists) if dists else None}
    for k in audits[0]:
        if k != "min_train_test_distance":
            out[k] = int(sum(a[k] for a in audits))
    return out


# ----------------------------------------------------------------------------- public API


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
        n_val = min(int(round(fractions.validation * n)), n - 1 - n_test)
        n_val = max(n_val, 0)
        parts["test"].append(idx[:n_test])
        parts["validation"].append(idx[n_test : n_test + n_val])
        parts["train"].append(idx[n_test + n_val :])
    cat = {s: np.sort(np.concatenate(v)).astype(np.int64) for s, v in parts.items()}
    return Fold(train=cat["train"], validation=cat["validation"], test=cat["test"])


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
        ``strategy``, ``block_size``, ``buffer``, ``fractions``, ``k``.
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
    _check_samples(samples)
    rx, ry = _res(res)
    if patch_size < 1 or patch_size % 2 == 0:
        raise InputError(f"split: patch size must be a positive odd number, got {patch_size}")
    xy = samples[["x", "y"]].to_numpy(dtype=np.float64)
    groups = samples["group"].to_numpy().astype(np.int64)
    _, names, cls = _classes(samples)
    n = len(samples)

    if cfg.strategy == "random":
        fold = random_split(samples, cfg.fractions, seed)
        labels = np.empty(n, dtype=object)
        labels[fold.train], labels[fold.validation], labels[fold.test] = "train", "validation", "test"
        labels = labels.astype(str)
        audit = audit_split(xy, (rx, ry), patch_size, fold.train, fold.test, fold.validation)
        counts = _counts(labels, cls, names)
        report = {"strategy": "random", "block_size": None, "buffer": None, "seed": int(seed),
                  "counts": counts, "dropped_by_buffer": 0, "missing_classes": _missing(counts),
                  "audit": audit}
        gdf = _group_frame(xy, groups, labels, rx, ry, crs)
        return SplitResult("random", [fold], labels, np.zeros(n, dtype=np.int64), groups.copy(), gdf, report)

    buffer = float(cfg.buffer) if cfg.buffer is not None else default_buffer(patch_size, (rx, ry))
    k = int(cfg.k) if cfg.strategy == "kfold" else 1
    ext_x, ext_y = _extent(xy, rx, ry)
    if cfg.block_size is not None:
        size = float(cfg.block_size)
        if size >= max(ext_x, ext_y):
            raise InputError(
                f"split.block_size={size:g} is not smaller than the labelled extent "
                f"({ext_x:g} x {ext_y:g} map units): every label would fall in one or very few blocks; "
                f"set a smaller split.block_size or leave it unset for the default"
            )
    else:
        size = default_block_size(samples, patch_size, (rx, ry), buffer, k=k if cfg.strategy == "kfold" else 5)

    cell, x0, y0, nx = _grid(xy, size)
    block = _group_blocks(groups, cell)
    unit_ids, unit_of = np.unique(block, return_inverse=True)
    U, K = unit_ids.size, len(names)
    C = np.zeros((U, K), dtype=np.int64)
    np.add.at(C, (unit_of, cls), 1)
    n_groups = np.unique(groups).size
    rng = np.random.default_rng(seed)
    fr = cfg.fractions

    if cfg.strategy == "blocks":
        need = 3 if fr.validation > 0 else 2
        if U < need:
            raise InputError(
                f"split: the labels fall in only {U} block(s) of {size:g} map units ({n_groups} groups); "
                f"train/validation/test need at least {need}: reduce split.block_size, add label polygons "
                f"in other places, or use split.strategy: random"
            )
        lab = _assign_units(C, np.array([fr.train, fr.validation, fr.test]), rng, (TRAIN, TEST))
        unit_split = np.array(SPLIT_NAMES, dtype=object)[lab].astype(str)
        labels0 = unit_split[unit_of]
        labels, dropped = _apply_buffer(xy, labels0, cls, names, buffer, "split")
        audit = audit_split(xy, (rx, ry), patch_size, np.flatnonzero(labels == "train"),
                            np.flatnonzero(labels == "test"), np.flatnonzero(labels == "validation"))
        check_no_leak(audit, f"split (blocks of {size:g}, buffer {buffer:g})")
        counts = _counts(labels, cls, names)
        report = {"strategy": "blocks", "block_size": size, "buffer": buffer, "seed": int(seed),
                  "counts": counts, "dropped_by_buffer": dropped, "missing_classes": _missing(counts, warn=True),
                  "audit": audit}
        gdf = _block_frame(unit_ids, list(unit_split), np.zeros(U, dtype=np.int64), C.sum(1), x0, y0, nx, size, crs)
        return SplitResult("blocks", [_fold_of(labels)], labels, np.zeros(n, dtype=np.int64), block, gdf, report,
                           block_size=size, buffer=buffer, fold_splits=[labels])

    # ---- kfold
    present = C > 0
    single = present.sum(0) == 1
    never_test = present[:, single].any(1)  # units holding a class found nowhere else
    testable = np.flatnonzero(~never_test)
    if testable.size < k:
        raise InputError(
            f"split: the labels fall in only {testable.size} usable block(s) of {size:g} map units "
            f"({n_groups} groups) but split.k={k} folds need at least {k}: reduce split.k or "
            f"split.block_size, or add label polygons in other places"
        )
    ufold = np.full(U, -1, dtype=np.int64)
    ufold[testable] = _assign_kfold(C[testable], k, rng)
    fold_splits: list[np.ndarray] = []
    folds: list[Fold] = []
    audits: list[dict] = []
    per_fold: list[dict] = []
    unit_split0: list[str] = []
    val_share = float(fr.validation)
    for f in range(k):
        rest = np.flatnonzero(ufold != f)
        lab_rest = _assign_units(C[rest], np.array([1.0 - val_share, val_share]), rng, (TRAIN,))
        unit_split = np.full(U, "test", dtype=object)
        unit_split[rest] = np.array(["train", "validation"], dtype=object)[lab_rest]
        if f == 0:
            unit_split0 = [str(v) for v in unit_split]
        labels0 = unit_split.astype(str)[unit_of]
        labels, dropped = _apply_buffer(xy, labels0, cls, names, buffer, f"split (kfold, fold {f})")
        audit = audit_split(xy, (rx, ry), patch_size, np.flatnonzero(labels == "train"),
                            np.flatnonzero(labels == "test"), np.flatnonzero(labels == "validation"))
        check_no_leak(audit, f"split (kfold fold {f}, blocks of {size:g}, buffer {buffer:g})")
        counts = _counts(labels, cls, names)
        per_fold.append({"fold": f, "counts": counts, "dropped_by_buffer": dropped,
                         "missing_classes": _missing(counts), "audit": audit})
        audits.append(audit)
        fold_splits.append(labels)
        folds.append(_fold_of(labels))
    report = {"strategy": "kfold", "block_size": size, "buffer": buffer, "seed": int(seed), "k": k,
              "counts": per_fold[0]["counts"], "dropped_by_buffer": per_fold[0]["dropped_by_buffer"],
              "missing_classes": {
                  "train": sorted({c for p in per_fold for c in p["missing_classes"]["train"]}),
                  "test": [names[c] for c in range(K) if not any(p["counts"]["test"][names[c]] for p in per_fold)]},
              "audit": _merge_audits(audits), "folds": per_fold}
    gdf = _block_frame(unit_ids, unit_split0, ufold, C.sum(1), x0, y0, nx, size, crs)
    sample_fold = ufold[unit_of]
    return SplitResult("kfold", folds, fold_splits[0], sample_fold, block, gdf, report,
                       block_size=size, buffer=buffer, fold_splits=fold_splits)


def _assign_kfold(C: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Deal units (C: shape (U, K)) into k folds; each class is spread over >= 2 folds where possible."""
    U, K = C.shape
    sizes = C.sum(1).astype(np.float64)
    class_tot = C.sum(0).astype(np.float64)
    targets = np.full((k, 1), 1.0 / k) * class_tot[None, :]
    cur = np.zeros((k, K))
    lab = np.full(U, -1, dtype=np.int64)
    present = C > 0
    for c in np.lexsort((np.arange(K), present.sum(0))):
        units_c = np.flatnonzero(present[:, c])
        have = set(int(v) for v in lab[units_c] if v >= 0)
        want = min(2, units_c.size, k)
        while len(have) < want:
            free = units_c[lab[units_c] < 0]
            if free.size == 0:
                break
            order = [f for f in np.argsort(cur.sum(1), kind="stable") if int(f) not in have]
            f = int(order[0])
            u = _pick(free, sizes, targets[f].sum() - cur[f].sum(), rng)
            lab[u] = f
            cur[f] += C[u]
            have.add(f)
    _place_rest(lab, cur, C, targets, rng, list(range(k)))
    # no empty fold
    for f in range(k):
        if np.any(lab == f):
            continue
        donors = [g for g in range(k) if np.sum(lab == g) >= 2]
        g = max(donors, key=lambda d: (np.sum(lab == d), -d))
        cand = np.flatnonzero(lab == g)
        u = int(cand[np.lexsort((cand, sizes[cand]))[0]])
        cur[g] -= C[u]
        lab[u] = f
        cur[f] += C[u]
    return lab


def _group_frame(xy: np.ndarray, groups: np.ndarray, labels: np.ndarray, rx: float, ry: float,
                 crs: Any) -> gpd.GeoDataFrame:
    """Random strategy: one square per group (envelope of its pixels), split or 'mixed'."""
    df = pd.DataFrame({"g": groups, "x": xy[:, 0], "y": xy[:, 1], "s": labels})
    agg = df.groupby("g", sort=True).agg(x0=("x", "min"), x1=("x", "max"), y0=("y", "min"), y1=("y", "max"),
                                         n=("s", "size"), ns=("s", "nunique"), s=("s", "first"))
    cx, cy = (agg.x0 + agg.x1) / 2, (agg.y0 + agg.y1) / 2
    half = np.maximum(agg.x1 - agg.x0 + rx, agg.y1 - agg.y0 + ry) / 2
    geom = shapely.box(cx - half, cy - half, cx + half, cy + half)
    split = np.where(agg.ns.to_numpy() > 1, "mixed", agg.s.to_numpy().astype(str))
    return gpd.GeoDataFrame({"block": agg.index.to_numpy().astype(np.int64), "split": split,
                             "fold": np.zeros(len(agg), dtype=np.int64), "n_samples": agg.n.to_numpy()},
                            geometry=geom, crs=crs)


def _buffer_zones(result: SplitResult, xy: np.ndarray) -> list[tuple[int, Any]]:
    out = []
    if not result.buffer or result.strategy == "random":
        return out
    b = float(result.buffer)
    labs = result.fold_splits or [result.split]
    for f, lab in enumerate(labs):
        t = xy[lab == "test"]
        if len(t) == 0:
            continue
        boxes = shapely.box(t[:, 0] - b, t[:, 1] - b, t[:, 0] + b, t[:, 1] + b)
        out.append((f, shapely.union_all(boxes)))
    return out


def write_splits_gpkg(result: SplitResult, samples: pd.DataFrame, path: Path, crs: Any) -> Path:
    """Write ``splits.gpkg`` with layers ``blocks`` and ``buffer``.

    ``blocks`` is :attr:`SplitResult.blocks`; ``buffer`` holds one (multi)polygon
    per fold: the union of the squares of half-side ``buffer`` around the test
    samples, i.e. the zone where training/validation samples were excluded
    (empty for the random strategy). The file is written under a temporary
    name and moved into place with ``os.replace``.

    Parameters
    ----------
    result : SplitResult
    samples : DataFrame, n rows
        The table that was split (needs ``x``, ``y``).
    path : Path
    crs
        CRS of the coordinates.

    Returns
    -------
    Path
    """
    path = Path(path)
    xy = samples[["x", "y"]].to_numpy(dtype=np.float64)
    blocks = result.blocks.copy()
    blocks = blocks.set_crs(crs, allow_override=True) if crs is not None else blocks
    zones = _buffer_zones(result, xy)
    buf = gpd.GeoDataFrame(
        {"fold": np.array([z[0] for z in zones], dtype=np.int64),
         "buffer": np.full(len(zones), float(result.buffer or 0.0))},
        geometry=gpd.GeoSeries([z[1] for z in zones], dtype="geometry"),
        crs=crs,
    )
    with atomic_path(path) as tmp:
        blocks.to_file(tmp, layer="blocks", driver="GPKG")
        buf.to_file(tmp, layer="buffer", driver="GPKG", geometry_type="MultiPolygon" if not zones else None)
    return path


def plot_split_map(samples: pd.DataFrame, result: SplitResult, path: Path) -> Path:
    """Draw the split as a PNG: blocks coloured by split, samples as points.

    Parameters
    ----------
    samples : DataFrame, n rows
        The table that was split (needs ``x``, ``y``).
    result : SplitResult
    path : Path

    Returns
    -------
    Path
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    xy = samples[["x", "y"]].to_numpy(dtype=np.float64)
    fig = Figure(figsize=(10, 7), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if len(result.blocks):
        colors = [SPLIT_COLORS.get(str(s), "#cccccc") for s in result.blocks["split"]]
        result.blocks.plot(ax=ax, color=colors, alpha=0.25, edgecolor="#444444", linewidth=0.4)
    zones = _buffer_zones(result, xy)[:1]  # fold 0, as the points
    for _, zone in zones:
        gpd.GeoSeries([zone]).plot(ax=ax, facecolor="none", edgecolor=SPLIT_COLORS["test"], linestyle="--",
                                   linewidth=0.7)
    handles = []
    for s in ("train", "validation", "test", EXCLUDED):
        m = result.split == s
        if m.any():
            ax.scatter(xy[m, 0], xy[m, 1], s=2 if s != EXCLUDED else 3, c=SPLIT_COLORS[s],
                       marker="." if s != EXCLUDED else "x", linewidths=0.5, rasterized=True)
        handles.append(Line2D([], [], color=SPLIT_COLORS[s], marker="o" if s != EXCLUDED else "x",
                              linestyle="", label=f"{s} ({int(m.sum())})"))
    handles.append(Patch(facecolor="#dddddd", edgecolor="#444444",
                         label="block of each polygon (tinted by split;\na polygon's pixels may spill over)"))
    if zones:
        handles.append(Line2D([], [], color=SPLIT_COLORS["test"], linestyle="--",
                              label="buffer around test pixels"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, framealpha=0.85)
    n = {s: int(np.sum(result.split == s)) for s in ("train", "validation", "test", EXCLUDED)}
    bs = result.report.get("block_size")
    extra = f", blocks {bs:g}, buffer {result.report.get('buffer'):g}" if bs else ""
    fold = " (fold 0)" if result.strategy == "kfold" else ""
    ax.set_title(f"split: {result.strategy}{fold}{extra}\ntrain {n['train']} / validation {n['validation']} / "
                 f"test {n['test']} / excluded {n[EXCLUDED]}", fontsize=9)
    ax.set_aspect("equal")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.ticklabel_format(useOffset=False, style="plain")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path

"""Pure assignment maths of the spatial split: block grids, group-to-block rules,
stratified placement of blocks into splits or folds, the buffer.

Nothing here reads or writes files or builds geometries; every function works on
NumPy arrays and is deterministic given its ``numpy.random.Generator``. The rules
are described in the docstring of :mod:`pipeline.split.make`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.spatial import cKDTree

from pipeline.core.errors import InputError

TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "validation", "test")
EXCLUDED = "excluded"
TARGET_UNITS = 50  # blocks wanted for stratification when choosing the default block size


def pixel_size(res: tuple[float, float]) -> tuple[float, float]:
    """``(|res_x|, |res_y|)``; raises :class:`InputError` unless both are positive."""
    rx, ry = abs(float(res[0])), abs(float(res[1]))
    if not (rx > 0 and ry > 0):
        raise InputError(f"split: pixel size must be positive, got {res}")
    return rx, ry


def default_buffer(patch_size: int, res: tuple[float, float]) -> float:
    """Leak-free default buffer ``(k // 2 + 1/2) * max(|res_x|, |res_y|)`` in map units."""
    rx, ry = pixel_size(res)
    return float((patch_size // 2 + 0.5) * max(rx, ry))


def grid(xy: np.ndarray, size: float) -> tuple[np.ndarray, float, float, int]:
    """Block id per sample (shape (n,)), grid anchor x0, y0 and number of columns."""
    x0 = math.floor(float(xy[:, 0].min()) / size) * size
    y0 = math.floor(float(xy[:, 1].min()) / size) * size
    bx = np.floor((xy[:, 0] - x0) / size).astype(np.int64)
    by = np.floor((xy[:, 1] - y0) / size).astype(np.int64)
    nx = int(bx.max()) + 1
    return by * nx + bx, x0, y0, nx


def group_blocks(groups: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Per sample, the block holding most samples of its group (ties: smallest block id).

    ``groups``, ``cell``: int arrays of shape (n,), ``cell >= 0``. Returns int64, shape (n,).
    """
    if len(groups) == 0:
        return np.zeros(0, dtype=np.int64)
    _, g = np.unique(groups, return_inverse=True)
    cell = np.asarray(cell, dtype=np.int64)
    width = int(cell.max()) + 1
    pairs, counts = np.unique(g.astype(np.int64) * width + cell, return_counts=True)
    pg, pb = pairs // width, pairs % width
    order = np.lexsort((pb, -counts, pg))  # per group: most samples first, then the smallest block
    first = order[np.r_[True, pg[order][1:] != pg[order][:-1]]]
    best = np.empty(int(pg.max()) + 1, dtype=np.int64)
    best[pg[first]] = pb[first]
    return best[g]


def extent(xy: np.ndarray, rx: float, ry: float) -> tuple[float, float]:
    """Width and height of the labelled area (pixel footprints included), map units."""
    return float(np.ptp(xy[:, 0]) + rx), float(np.ptp(xy[:, 1]) + ry)


def candidate_sizes(s0: float, pix: float, ext: float) -> list[float]:
    """Block sizes ``s0 * sqrt(2) ** j`` rounded up to whole pixels, below the extent (at least one)."""
    cands: list[float] = []
    for j in range(61):
        s = math.ceil(s0 * math.sqrt(2) ** j / pix - 1e-9) * pix
        if j > 0 and s >= ext:
            break
        if not cands or s > cands[-1]:
            cands.append(float(s))
    return cands


def default_size(units_at: Callable[[float], int], s0: float, pix: float, ext: float, k: int = 5) -> float:
    """Default block size in map units: the largest candidate size (see :func:`candidate_sizes`)
    that still gives ``min(max(50, 5 * k), units_at(s0))`` assignment units.

    ``units_at(size)`` is the number of non-empty assignment units at that block size.
    """
    cands = candidate_sizes(s0, pix, ext)
    units = [units_at(s) for s in cands]
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


def _place_rest(
    lab: np.ndarray, cur: np.ndarray, C: np.ndarray, targets: np.ndarray, rng: np.random.Generator, allowed: list[int]
) -> None:
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


def _seed_required(
    lab: np.ndarray,
    cur: np.ndarray,
    C: np.ndarray,
    targets: np.ndarray,
    rng: np.random.Generator,
    required: tuple[int, ...],
) -> None:
    """Rarest class first: give each class a unit in every required split (in priority order)
    while it has free units; a class present in one unit only goes to ``required[0]``."""
    K = C.shape[1]
    class_tot = C.sum(0).astype(np.float64)
    present = C > 0
    for c in np.lexsort((np.arange(K), present.sum(0))):
        units_c = np.flatnonzero(present[:, c])
        if units_c.size == 1 and lab[units_c[0]] < 0:
            lab[units_c[0]] = required[0]
            cur[required[0]] += C[units_c[0]]
        if units_c.size <= 1:
            continue
        for s in required:
            free = units_c[lab[units_c] < 0]
            if np.any(lab[units_c] == s) or free.size == 0:
                continue
            # the free unit that brings the counts closest to the targets (random among ties)
            free = free[rng.permutation(free.size)]
            costs = []
            for u in free:
                cur[s] += C[u]
                costs.append(_cost(cur, targets, class_tot, class_tot.sum()))
                cur[s] -= C[u]
            u = int(free[int(np.argmin(costs))])
            lab[u] = s
            cur[s] += C[u]


def _fill_empty_splits(
    lab: np.ndarray,
    cur: np.ndarray,
    C: np.ndarray,
    targets: np.ndarray,
    fractions: np.ndarray,
    required: tuple[int, ...],
) -> None:
    """Every split with a positive target gets at least one unit if that is possible: move the unit
    whose move loses the fewest classes from a required split, then deviates least from the targets.
    A split that is not required (validation) stays empty rather than take the last unit of a class
    in a required split."""
    U = C.shape[0]
    class_tot = C.sum(0).astype(np.float64)
    present = C > 0
    for s in range(len(fractions)):
        if fractions[s] <= 0 or np.any(lab == s):
            continue
        best_u, best_key = -1, None
        for u in range(U):
            src = lab[u]
            if np.sum(lab == src) < 2:
                continue
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
        if best_u >= 0 and best_key is not None and (s in required or best_key[0] == 0):
            # a split that is not required (validation) never takes a class's last train/test unit
            cur[lab[best_u]] -= C[best_u]
            lab[best_u] = s
            cur[s] += C[best_u]


def assign_units(
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
    targets = fractions[:, None] * C.sum(0).astype(np.float64)[None, :]
    cur = np.zeros((S, K))
    lab = np.full(U, -1, dtype=np.int64)
    _seed_required(lab, cur, C, targets, rng, required)
    _place_rest(lab, cur, C, targets, rng, [s for s in range(S) if fractions[s] > 0])
    _fill_empty_splits(lab, cur, C, targets, fractions, required)
    return lab


def assign_kfold(C: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Deal units (C: shape (U, K)) into k folds; each class is spread over >= 2 folds where possible.

    Returns the fold per unit, ndarray of int64, shape (U,); no fold is empty when U >= k.
    """
    U, K = C.shape
    sizes = C.sum(1).astype(np.float64)
    targets = np.full((k, 1), 1.0 / k) * C.sum(0).astype(np.float64)[None, :]
    cur = np.zeros((k, K))
    lab = np.full(U, -1, dtype=np.int64)
    present = C > 0
    for c in np.lexsort((np.arange(K), present.sum(0))):
        units_c = np.flatnonzero(present[:, c])
        have = set(int(v) for v in lab[units_c] if v >= 0)
        while len(have) < min(2, units_c.size, k):
            free = units_c[lab[units_c] < 0]
            if free.size == 0:
                break
            f = int([f for f in np.argsort(cur.sum(1), kind="stable") if int(f) not in have][0])
            u = _pick(free, sizes, targets[f].sum() - cur[f].sum(), rng)
            lab[u] = f
            cur[f] += C[u]
            have.add(f)
    _place_rest(lab, cur, C, targets, rng, list(range(k)))
    for f in range(k):  # no empty fold
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


def buffer_mask(
    xy: np.ndarray, test_mask: np.ndarray, cand_mask: np.ndarray, buffer: float, scene: np.ndarray | None = None
) -> np.ndarray:
    """Candidates (shape (n,) bool) lying at Chebyshev distance <= buffer from a test sample
    of the same scene (``scene``: shape (n,) scene codes; None = one scene)."""
    out = np.zeros(len(xy), dtype=bool)
    if buffer < 0 or not test_mask.any() or not cand_mask.any():
        return out
    scenes = [None] if scene is None else np.unique(scene)
    for sc in scenes:
        same = np.ones(len(xy), dtype=bool) if sc is None else scene == sc
        if not (test_mask & same).any():
            continue
        cand = np.flatnonzero(cand_mask & same)
        tree = cKDTree(xy[test_mask & same])
        n = tree.query_ball_point(xy[cand], r=buffer * (1 + 1e-9) + 1e-9, p=np.inf, return_length=True)
        out[cand[np.asarray(n) > 0]] = True
    return out

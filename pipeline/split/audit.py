"""Independent leakage audit of a train/validation/test split.

This module deliberately knows nothing about how a split was made (it imports
no strategy, nor :mod:`pipeline.split.make`). It only looks at sample coordinates, the pixel
size and the patch size, and counts how often the k x k patch footprint of a
sample in one split contains the centre of a pixel labelled in another split.

Geometry
--------
A sample at pixel centre ``(x, y)`` is classified from a k x k patch, k odd,
h = k // 2. The patch covers the pixels whose centres satisfy
``|x' - x| <= h * res_x`` and ``|y' - y| <= h * res_y``; its footprint is the
rectangle of half-widths ``(h + 1/2) * res_x`` and ``(h + 1/2) * res_y``.
A pixel centre lies inside that footprint iff the Chebyshev distance of the
two points, measured in pixel units (``dx / res_x``, ``dy / res_y``), is below
``h + 1/2``. On a pixel grid those distances are integers, so the half-pixel
margin makes the test robust to floating-point noise in the coordinates.
The relation is symmetric in the two samples, but the two counts differ: one
counts training samples, the other counts test samples.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from pipeline.core.errors import LeakageError

__all__ = ["audit_split", "check_no_leak", "AUDIT_KEYS"]

AUDIT_KEYS = (
    "min_train_test_distance",
    "train_patches_touching_test_pixels",
    "test_patches_touching_train_pixels",
    "validation_patches_touching_test_pixels",
    "test_patches_touching_validation_pixels",
)
_COUNT_KEYS = AUDIT_KEYS[1:]


def _as_index(idx: Any) -> np.ndarray:
    if idx is None:
        return np.zeros(0, dtype=np.int64)
    arr = np.asarray(idx)
    if arr.dtype == bool:
        return np.flatnonzero(arr)
    return arr.astype(np.int64, copy=False).ravel()


def _touching(scaled: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float) -> int:
    """Number of samples in ``a`` whose footprint contains the centre of some sample in ``b``."""
    if a.size == 0 or b.size == 0:
        return 0
    tree = cKDTree(scaled[b])
    hits = tree.query_ball_point(scaled[a], r=radius, p=np.inf, return_length=True)
    return int(np.count_nonzero(np.asarray(hits) > 0))


def audit_split(
    xy: np.ndarray,
    res: tuple[float, float],
    patch_size: int,
    train_idx: Any,
    test_idx: Any,
    validation_idx: Any = None,
    zones: Any = None,
) -> dict[str, Any]:
    """Count patch-footprint contacts between the splits of a sample set.

    Parameters
    ----------
    xy : ndarray, shape (n, 2)
        Pixel-centre map coordinates ``(x, y)`` of all samples.
    res : (float, float)
        Pixel size ``(res_x, res_y)`` in map units (the sign is ignored).
    patch_size : int
        Patch width k in pixels (odd).
    train_idx, test_idx : array_like of int, shape (n_train,), (n_test,)
        Integer positions into ``xy`` (a boolean mask of shape (n,) also works).
    validation_idx : array_like of int, shape (n_val,), optional
        Validation positions; when omitted the validation counts are 0.
    zones : array_like, shape (n,), optional
        A label per sample (e.g. the CRS of its scene): samples in different zones are never
        compared, because their coordinates are not comparable. Counts are summed over zones
        and the minimum distance is taken over zones.

    Returns
    -------
    dict
        ``min_train_test_distance``: smallest Euclidean distance (map units)
        between a training and a test sample, ``None`` if either set is empty;
        ``train_patches_touching_test_pixels``: training samples whose k x k
        footprint contains the centre of a test pixel;
        ``test_patches_touching_train_pixels``: the converse;
        ``validation_patches_touching_test_pixels`` and
        ``test_patches_touching_validation_pixels``: the same between
        validation and test. All counts are ``int``.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if zones is not None:
        zones = np.asarray(zones)
        tr, te, va = _as_index(train_idx), _as_index(test_idx), _as_index(validation_idx)
        parts = []
        for z in np.unique(zones):
            inz = zones == z
            parts.append(audit_split(xy, res, patch_size, tr[inz[tr]], te[inz[te]], va[inz[va]]))
        dists = [p["min_train_test_distance"] for p in parts if p["min_train_test_distance"] is not None]
        out: dict[str, Any] = {"min_train_test_distance": min(dists) if dists else None}
        out.update({k: sum(int(p[k]) for p in parts) for k in _COUNT_KEYS})
        return out
    rx, ry = abs(float(res[0])), abs(float(res[1]))
    if rx <= 0 or ry <= 0:
        raise ValueError(f"pixel size must be non-zero, got {res}")
    h = int(patch_size) // 2
    tr, te, va = _as_index(train_idx), _as_index(test_idx), _as_index(validation_idx)

    scaled = xy / np.array([rx, ry])
    radius = h + 0.5 - 1e-6  # footprint half-width in pixels (closed ball in cKDTree)

    if tr.size and te.size:
        dist, _ = cKDTree(xy[te]).query(xy[tr], k=1)
        dmin = float(np.min(dist))
        min_dist: float | None = dmin if math.isfinite(dmin) else None
    else:
        min_dist = None

    return {
        "min_train_test_distance": min_dist,
        "train_patches_touching_test_pixels": _touching(scaled, tr, te, radius),
        "test_patches_touching_train_pixels": _touching(scaled, te, tr, radius),
        "validation_patches_touching_test_pixels": _touching(scaled, va, te, radius),
        "test_patches_touching_validation_pixels": _touching(scaled, te, va, radius),
    }


def check_no_leak(audit: dict[str, Any], where: str) -> None:
    """Raise :class:`~pipeline.core.errors.LeakageError` if the audit found any contact.

    Parameters
    ----------
    audit : dict
        Output of :func:`audit_split`.
    where : str
        What was audited (e.g. ``"split blocks"`` or ``"split kfold fold 2"``),
        used at the start of the message.
    """
    bad = {k: int(audit.get(k) or 0) for k in _COUNT_KEYS if int(audit.get(k) or 0) > 0}
    if not bad:
        return
    parts = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in bad.items())
    dist = audit.get("min_train_test_distance")
    dtxt = f"; closest train/test samples are {dist:g} map units apart" if dist is not None else ""
    raise LeakageError(
        f"{where}: leakage audit failed ({parts}{dtxt}); patches of one split contain pixels of "
        f"another — increase split.buffer (leave it unset for the leak-free default) or split.block_size"
    )

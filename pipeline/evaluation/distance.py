"""The smallest distance between a training and a test sample, in metres and in pixels, in any CRS.

The split's audit measures it in map units, which for a raster in degrees is a figure like
0.0016 that the report printed as "0.00". Here the nearest pair is found on locally metric
coordinates (projected: the CRS's unit in metres; geographic: longitude scaled by the cosine of
the mean latitude, on the CRS's ellipsoid) and that pair's distance is given in metres (geodesic
on the ellipsoid for a geographic CRS) and in pixels (Euclidean, in units of the pixel size).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _metric_xy(xy: np.ndarray, crs: Any) -> tuple[np.ndarray, Any]:
    """Coordinates in (approximately) metres for a nearest-neighbour search, and the geodesic
    (``pyproj.Geod``) for a geographic CRS, else ``None``."""
    from pyproj import CRS

    pc = CRS.from_user_input(crs)
    if pc.is_geographic:
        geod = pc.get_geod()
        a = geod.a if geod is not None else 6_378_137.0
        lat0 = math.radians(float(np.mean(xy[:, 1]))) if len(xy) else 0.0
        k = math.pi / 180 * a
        return np.c_[xy[:, 0] * k * math.cos(lat0), xy[:, 1] * k], geod
    factor = float(pc.axis_info[0].unit_conversion_factor) if pc.axis_info else 1.0
    return xy * factor, None


def min_train_test_distance(
    xy: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    zones: np.ndarray,
    grids: Mapping[Any, tuple[Any, tuple[float, float]]],
) -> dict[str, float | None]:
    """The nearest training-test pair over every fold, in metres and pixels.

    Parameters
    ----------
    xy : ndarray, shape (n, 2)
        Pixel-centre coordinates of every sample, in its zone's CRS.
    folds : sequence of (train, test) integer position arrays
    zones : ndarray, shape (n,)
        A key per sample (e.g. its scene's CRS): samples of different zones are never compared.
    grids : mapping zone -> (CRS, (res_x, res_y))
        Each zone's CRS (anything ``pyproj.CRS.from_user_input`` takes) and pixel size in map units.

    Returns
    -------
    dict
        ``{"metres", "pixels", "map_units"}`` of the nearest pair; ``None`` when no fold has
        both a training and a test sample in one zone.
    """
    from scipy.spatial import cKDTree

    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    zones = np.asarray(zones)
    best: dict[str, float | None] = {"metres": None, "pixels": None, "map_units": None}
    for z in np.unique(zones):
        crs, res = grids[z]
        idx = np.flatnonzero(zones == z)
        pos = np.full(len(xy), -1, dtype=np.int64)
        pos[idx] = np.arange(idx.size)
        sub = xy[idx]
        mxy, geod = _metric_xy(sub, crs)
        for train, test in folds:
            tr = pos[np.asarray(train, dtype=np.int64)]
            te = pos[np.asarray(test, dtype=np.int64)]
            tr, te = tr[tr >= 0], te[te >= 0]
            if not (tr.size and te.size):
                continue
            dist, j = cKDTree(mxy[te]).query(mxy[tr], k=1)
            i = int(np.argmin(dist))
            a, b = sub[tr[i]], sub[te[int(j[i])]]
            metres = float(geod.inv(a[0], a[1], b[0], b[1])[2]) if geod is not None else float(dist[i])
            if best["metres"] is None or metres < best["metres"]:
                dx, dy = (a - b) / np.abs(np.asarray(res, dtype=np.float64))
                best = {"metres": metres, "pixels": math.hypot(dx, dy), "map_units": float(np.hypot(*(a - b)))}
    return best

"""Points from coordinate columns: a table without geometry (CSV, Parquet, a vector file's
attribute table) read as one point per row.

The columns are ``labels.x`` and ``labels.y`` when given, else the first pair of a common
naming found in the table, whatever its case (:data:`COORDINATE_PAIRS`: longitude/latitude,
lon/lat, x/y, easting/northing, ...). The coordinates are in ``labels.crs`` when given, else
EPSG:4326 for longitude/latitude names, else the image's CRS (the usual meaning of x/y or
easting/northing read off the image). A row whose coordinates are missing or not numbers has
no geometry; one outside the range of longitudes and latitudes has an invalid one: both are
counted as unusable labels of their class, never silently dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipeline.core.errors import InputError
from pipeline.inputs.settings import LabelConfig

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["COORDINATE_PAIRS", "GEOGRAPHIC_CRS", "coordinate_columns", "points_from_columns"]

#: Column names read as (x, y) in this order of preference (compared lower-cased); the first
#: four are longitude/latitude, whose CRS is :data:`GEOGRAPHIC_CRS` unless ``labels.crs`` says otherwise.
COORDINATE_PAIRS: list[tuple[str, str]] = [
    ("longitude", "latitude"),
    ("lon", "lat"),
    ("long", "lat"),
    ("lng", "lat"),
    ("x", "y"),
    ("easting", "northing"),
    ("east", "north"),
    ("e", "n"),
]
GEOGRAPHIC_NAMES = 4  # the first pairs of COORDINATE_PAIRS name longitude and latitude
GEOGRAPHIC_CRS = "EPSG:4326"


def _find(columns: list[str], name: str) -> str | None:
    """The column called ``name``, exactly or else whatever its case and surrounding spaces."""
    if name in columns:
        return name
    low = {str(c).strip().lower(): c for c in columns}
    return low.get(name.strip().lower())


def coordinate_columns(columns: list[str], cfg: LabelConfig, path: object) -> tuple[str, str, bool]:
    """``(x column, y column, whether they are longitude/latitude by name)``; an InputError naming
    the file, ``labels.x``/``labels.y`` and the table's columns when there is no such pair."""
    shown = ", ".join(map(str, columns[:20])) + (f", ... ({len(columns)} columns)" if len(columns) > 20 else "")
    if cfg.x is not None and cfg.y is not None:
        x, y = _find(columns, cfg.x), _find(columns, cfg.y)
        for key, want, got in (("labels.x", cfg.x, x), ("labels.y", cfg.y, y)):
            if got is None:
                raise InputError(f"{key}: {path} has no column {want!r} (columns: {shown})")
        assert x is not None and y is not None
        return x, y, False
    for i, (xn, yn) in enumerate(COORDINATE_PAIRS):
        x, y = _find(columns, xn), _find(columns, yn)
        if x is not None and y is not None:
            return x, y, i < GEOGRAPHIC_NAMES
    raise InputError(
        f"{path}: no geometry and no coordinate columns (longitude/latitude, lon/lat, x/y, easting/northing); "
        f"name them with labels.x and labels.y (columns: {shown})"
    )


def points_from_columns(
    df: pd.DataFrame, cfg: LabelConfig, path: object, image_crs: object
) -> tuple[gpd.GeoDataFrame, np.ndarray, dict[str, str]]:
    """One point per row of ``df``, in the CRS of its coordinates (see the module docstring).

    Returns a GeoDataFrame of ``df``'s columns and the points (no geometry where a row's
    coordinates are missing, not numbers or not finite), a bool array (n,) of the rows whose
    coordinates are out of range (invalid points), and ``{"x": column, "y": column, "crs": the
    CRS used, "crs_from": "labels.crs" | "column names" | "image"}`` for labels.json."""
    import geopandas as gpd

    x, y, geographic = coordinate_columns(list(df.columns), cfg, path)
    crs: object = image_crs
    why = "image"
    if cfg.crs is not None:
        crs, why = cfg.crs, "labels.crs"
    elif geographic:
        crs, why = GEOGRAPHIC_CRS, "column names"
    xs = pd.to_numeric(df[x], errors="coerce").to_numpy(np.float64)
    ys = pd.to_numeric(df[y], errors="coerce").to_numpy(np.float64)
    ok = np.isfinite(xs) & np.isfinite(ys)
    geoms = gpd.points_from_xy(np.where(ok, xs, 0.0), np.where(ok, ys, 0.0))
    geoms[~ok] = None
    gdf = gpd.GeoDataFrame(df.drop(columns=[c for c in ("geometry",) if c in df.columns]), geometry=geoms, crs=crs)
    invalid = _outside_lonlat(xs, ys, gdf.crs) & ok
    crs_name = gdf.crs.to_string() if gdf.crs is not None else str(crs)
    return gdf, invalid, {"x": str(x), "y": str(y), "crs": crs_name, "crs_from": why}


def _outside_lonlat(xs: np.ndarray, ys: np.ndarray, crs: object) -> np.ndarray:
    """Rows of a geographic CRS whose longitude or latitude is out of range (a typo, or x/y swapped
    beyond repair): invalid points, not points somewhere off the map."""
    if crs is None or not getattr(crs, "is_geographic", False):
        return np.zeros(len(xs), dtype=bool)
    with np.errstate(invalid="ignore"):
        return (np.abs(xs) > 360) | (np.abs(ys) > 90)

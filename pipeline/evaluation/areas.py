"""True ground area of raster pixels, in any CRS the pipeline accepts.

In a projected CRS every pixel has the same area (converted to square metres through the CRS's
unit, so US-feet grids are right too). In a geographic CRS (degrees, e.g. EPSG:4326) a pixel's
area shrinks with the cosine of latitude; every pixel of one row has the same area, computed on
the CRS's ellipsoid with :class:`pyproj.Geod`. Class areas sum these per-row areas, so they
agree with the same scene measured in an equal-area or UTM projection.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from pipeline.core.errors import InputError

if TYPE_CHECKING:
    import pyproj


def _pyproj(crs: CRS | str) -> pyproj.CRS:
    from pyproj import CRS as PCRS

    return PCRS.from_user_input(crs.to_wkt() if isinstance(crs, CRS) else crs)


def check_area_crs(crs: CRS | None, where: str | Path) -> str:
    """Raise :class:`InputError` (naming ``where``) unless pixel areas can be measured in ``crs``.

    Returns ``"projected"`` or ``"geographic"``. The run calls it in ``prepare``, so a CRS whose
    areas cannot be computed stops before any training.
    """
    if crs is None:
        raise InputError(f"{where}: raster has no CRS; class areas cannot be measured")
    pc = _pyproj(crs)
    if pc.is_geographic:
        if pc.get_geod() is None:
            raise InputError(
                f"{where}: geographic CRS {crs.to_string()} has no ellipsoid; pixel areas cannot be "
                "measured (reproject the raster)"
            )
        unit = pc.axis_info[0].unit_name.lower() if pc.axis_info else "degree"
        if "degree" not in unit:
            raise InputError(f"{where}: geographic CRS in {unit!r}; pixel areas need degrees (reproject the raster)")
        return "geographic"
    if pc.is_projected:
        factor = pc.axis_info[0].unit_conversion_factor if pc.axis_info else None
        if not factor:
            raise InputError(f"{where}: CRS {crs.to_string()} has no linear unit; reproject to a CRS in metres")
        return "projected"
    raise InputError(
        f"{where}: CRS {crs.to_string()} is neither projected nor geographic; pixel areas cannot be "
        "measured (reproject the raster)"
    )


def row_areas_m2(crs: CRS, transform: Affine, height: int, row_off: int = 0) -> np.ndarray:
    """Ground area in m² of one pixel of each row ``row_off .. row_off + height - 1``, shape (height,).

    North-up grids only (``transform.b == transform.d == 0``), as the pipeline's rasters are.
    """
    kind = check_area_crs(crs, "raster")
    pc = _pyproj(crs)
    if kind == "projected":
        f = float(pc.axis_info[0].unit_conversion_factor)
        return np.full(height, abs(transform.a * transform.e - transform.b * transform.d) * f * f)
    geod = pc.get_geod()
    if geod is None:  # check_area_crs refuses a geographic CRS without an ellipsoid
        raise InputError(f"raster: geographic CRS {crs.to_string()} has no ellipsoid; pixel areas cannot be measured")
    lon0, dlon = transform.c, transform.a
    rows = np.arange(row_off, row_off + height, dtype=np.float64)
    top = transform.f + rows * transform.e
    bottom = top + transform.e
    out = np.empty(height)
    for i, (a, b) in enumerate(zip(top, bottom)):
        lats = [
            float(np.clip(a, -90, 90)),
            float(np.clip(a, -90, 90)),
            float(np.clip(b, -90, 90)),
            float(np.clip(b, -90, 90)),
        ]
        area, _ = geod.polygon_area_perimeter([lon0, lon0 + dlon, lon0 + dlon, lon0], lats)
        out[i] = abs(area)
    return out


def class_pixels_and_areas(map_path: str | Path, nodata: int = 255) -> tuple[dict[int, int], dict[int, float]]:
    """Pixels and ground area (hectares) of every value of a class map, window by window.

    Returns ``(counts, area_ha)``, dicts class id -> pixels / hectares, without ``nodata`` (and
    the file's own nodata). Works in projected and geographic CRSs (per-row pixel areas).
    """
    import rasterio

    path = Path(map_path)
    if not path.exists():
        raise InputError(f"{path}: map file not found")
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as e:
        raise InputError(f"{path}: cannot read the map ({e})") from None
    with src:
        check_area_crs(src.crs, path)
        rows_m2 = row_areas_m2(src.crs, src.transform, src.height)
        skip = {int(nodata)}
        if src.nodata is not None and float(src.nodata).is_integer():
            skip.add(int(src.nodata))
        k = 256 if src.dtypes[0] == "uint8" else None
        counts = np.zeros(k or 0, dtype=np.int64)
        area = np.zeros(k or 0, dtype=np.float64)
        for _, w in src.block_windows(1):
            data = src.read(1, window=w).astype(np.int64, copy=False)
            h = data.shape[0]
            kk = k or int(max(data.max(initial=0), counts.size - 1)) + 1
            if kk > counts.size:
                counts = np.pad(counts, (0, kk - counts.size))
                area = np.pad(area, (0, kk - area.size))
            ok = (data >= 0) & (data < kk)
            # one bincount over (row, value) pairs gives every row's class counts at once
            idx = (np.arange(h)[:, None] * kk + data)[ok]
            per_row = np.bincount(idx, minlength=h * kk).reshape(h, kk)
            counts[:kk] += per_row.sum(axis=0)
            area[:kk] += rows_m2[w.row_off : w.row_off + h] @ per_row
    ids = [v for v in range(counts.size) if counts[v] > 0 and v not in skip]
    return {v: int(counts[v]) for v in ids}, {v: float(area[v] / 1e4) for v in ids}

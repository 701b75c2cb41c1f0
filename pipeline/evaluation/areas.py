"""Class areas of a map: true ground area of its pixels, in any CRS the pipeline accepts
(pixel areas: :mod:`pipeline.inputs.pixel_area`).

In a projected CRS every pixel has the same area (converted to square metres through the CRS's
unit, so US-feet grids are right too). In a geographic CRS (degrees, e.g. EPSG:4326) a pixel's
area shrinks with the cosine of latitude; every pixel of one row has the same area, computed on
the CRS's ellipsoid with :class:`pyproj.Geod`. Class areas sum these per-row areas, so they
agree with the same scene measured in an equal-area or UTM projection.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.errors import InputError
from pipeline.inputs.pixel_area import check_area_crs, row_areas_m2


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

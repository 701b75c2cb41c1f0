"""Ground area of raster pixels, in any CRS the pipeline accepts (used by class areas, the
minimum mapping unit and polygon areas alike).

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


def pyproj_crs(crs: CRS | str) -> pyproj.CRS:
    """A rasterio CRS (or any user input pyproj accepts) as a :class:`pyproj.CRS`."""
    from pyproj import CRS as PCRS

    return PCRS.from_user_input(crs.to_wkt() if isinstance(crs, CRS) else crs)


def check_area_crs(crs: CRS | None, where: str | Path) -> str:
    """Raise :class:`InputError` (naming ``where``) unless pixel areas can be measured in ``crs``.

    Returns ``"projected"`` or ``"geographic"``. The run calls it in ``prepare``, so a CRS whose
    areas cannot be computed stops before any training.
    """
    if crs is None:
        raise InputError(f"{where}: raster has no CRS; class areas cannot be measured")
    pc = pyproj_crs(crs)
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
    pc = pyproj_crs(crs)
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


def linear_unit_m(crs: CRS) -> float:
    """Metres per unit of a projected CRS's first axis (1.0 for metres, 0.3048... for feet)."""
    return float(pyproj_crs(crs).axis_info[0].unit_conversion_factor)

"""Minimum mapping unit: clumps of a class map smaller than the unit merged into their largest
neighbour, by GDAL's sieve filter (``GDALSieveFilter`` through :func:`rasterio.features.sieve`).

**How maps of any size are sieved, and why the result cannot depend on windows.** The sieve is
one call on the whole map, never per window: GDAL reads the class map row by row from the file
(``rasterio.band``) and numbers every clump of the *whole* map, so each clump's size and its
largest neighbour are the same whatever the size of the windows the map was classified in.
GDAL writes its result into an array that is a memory-mapped temporary file beside the output
(``numpy.memmap``; rasterio hands GDAL the array's own buffer), so the map is never held in
resident memory: what stays resident is GDAL's table of clumps (a few dozen bytes per clump)
and the block cache of one row of tiles. The result is then copied into a
tiled GeoTIFF window by window and written as a class map (:func:`write_class_map`: COG,
colours, names, sidecars, legend). ``tests/test_mmu.py`` checks it equals GDAL's sieve of the
whole array held in memory, for every mapping window size.

Pixels without data (:data:`~pipeline.inputs.class_table.NODATA_CLASS`) are left out of the
sieve through a mask: they are never filled, and a clump next to them merges into a class,
never into "no data".

A unit is given in pixels (``4``, ``"4px"``) or as an area (``"0.5ha"``, ``"5000m2"``,
``"0.01km2"``): the clump must have at least that many pixels, or at least that area, to stay.
An area becomes a pixel count through the map's pixel area (:mod:`pipeline.inputs.pixel_area`);
in a geographic CRS pixels shrink towards the poles and the pixel area of the map's middle row
is used (the record says which count was applied).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from pipeline.core.atomic import reserve_space
from pipeline.core.errors import InputError
from pipeline.inputs.class_table import NODATA_CLASS, ClassTable
from pipeline.inputs.pixel_area import row_areas_m2
from pipeline.mapping.class_maps import temporary_path, write_class_map, writing
from pipeline.mapping.settings import MinimumMappingUnit

log = logging.getLogger(__name__)

MMU_TAG = "MINIMUM_MAPPING_UNIT"  # tags on a sieved map: what was removed and from which map
CONNECTIVITIES = (4, 8)


def middle_pixel_area_m2(src: Any) -> float:
    """Ground area in m² of a pixel of an open dataset's middle row (every row in a projected CRS)."""
    return float(row_areas_m2(src.crs, src.transform, 1, row_off=src.height // 2)[0])


def mmu_map_path(map_path: str | Path) -> Path:
    """``<dir>/<stem>_mmu.tif``: where the sieved map of a class map is written, beside it."""
    p = Path(map_path)
    return p.with_name(f"{p.stem}_mmu{p.suffix}")


def _sieve_cache_bytes(width: int) -> int:
    """GDAL's block cache for sieving: one row of 256-px tiles of the map and of its mask, plus slack.
    Smaller, GDAL would decompress every tile again for each of its 256 rows."""
    return 2 * 256 * width + 16 * 2**20


def sieve_class_map(
    map_path: str | Path,
    out_path: str | Path,
    classes: ClassTable,
    mmu: MinimumMappingUnit,
    connectivity: int = 4,
) -> dict:
    """Write ``out_path``: the class map at ``map_path`` with every clump smaller than ``mmu``
    merged into its largest neighbour (GDAL's sieve, ``connectivity`` 4 or 8), as a class map
    with ``classes``' colours, names, sidecars and legend. Streams (see the module docstring).

    Returns ``{"path", "mmu", "mmu_pixels", "pixel_area_m2", "connectivity", "changed_pixels",
    "valid_pixels", "source"}``: the unit as given, the pixel threshold applied, and how many
    valid pixels changed class.
    """
    from rasterio.features import sieve

    map_path, out_path = Path(map_path), Path(out_path)
    if connectivity not in CONNECTIVITIES:
        raise InputError(f"connectivity {connectivity}: must be 4 or 8")
    mask_tmp, raw, mm_tmp = (temporary_path(out_path, t) for t in ("mask", "raw", "sieve"))
    mm_tmp = mm_tmp.with_suffix(".u8")
    with rasterio.open(map_path) as src:
        height, width = src.height, src.width
        pa = middle_pixel_area_m2(src)
        size = mmu.pixels(pa)
        if size > height * width:
            raise InputError(
                f"{map_path}: minimum mapping unit {mmu} is {size} pixels, more than the whole map ({width} x {height})"
            )
        profile = dict(
            driver="GTiff",
            width=width,
            height=height,
            count=1,
            dtype="uint8",
            nodata=NODATA_CLASS,
            crs=src.crs,
            transform=src.transform,
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="deflate",
            zlevel=1,
        )
        needed = int(height * width * (2 + 4 / 3))  # memory-mapped result, raw copy, COG with overviews
        log.info(
            "%s: removing clumps smaller than %d px (MMU %s, %d-connected)", map_path.name, size, mmu, connectivity
        )
        changed = valid = 0
        try:
            with writing(out_path, needed, "the MMU map"), rasterio.Env(GDAL_CACHEMAX=_sieve_cache_bytes(width)):
                with rasterio.open(mask_tmp, "w", **{**profile, "nodata": None}) as m:
                    for _, w in src.block_windows(1):
                        m.write((src.read(1, window=w) != NODATA_CLASS).astype(np.uint8), 1, window=w)
                out = np.memmap(mm_tmp, dtype=np.uint8, mode="w+", shape=(height, width))
                reserve_space(mm_tmp, height * width, out_path, needed, "the MMU map")  # a full disk: not SIGBUS
                with rasterio.open(mask_tmp) as m:
                    sieve(rasterio.band(src, 1), size, out=out, mask=rasterio.band(m, 1), connectivity=connectivity)
                with rasterio.open(raw, "w", **profile) as dst:
                    for row in range(0, height, 256):
                        win = Window(0, row, width, min(256, height - row))
                        before = src.read(1, window=win)
                        after = np.array(out[row : row + int(win.height)])
                        after[before == NODATA_CLASS] = NODATA_CLASS  # masked pixels stay as they were
                        ok = before != NODATA_CLASS
                        valid += int(ok.sum())
                        changed += int((after[ok] != before[ok]).sum())
                        dst.write(after, 1, window=win)
                    dst.update_tags(**{MMU_TAG: str(mmu), "MMU_PIXELS": str(size), "SIEVED_FROM": map_path.name})
                del out
            write_class_map(raw, out_path, classes, needed=needed)
        finally:
            for p in (mask_tmp, raw, mm_tmp):
                p.unlink(missing_ok=True)
    return {
        "path": str(out_path),
        "source": str(map_path),
        "mmu": str(mmu),
        "mmu_pixels": size,
        "pixel_area_m2": pa,
        "connectivity": connectivity,
        "changed_pixels": changed,
        "valid_pixels": valid,
    }

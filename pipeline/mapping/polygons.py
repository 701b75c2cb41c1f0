"""A class map as polygons: one GeoPackage feature per clump of pixels, with its class id, class
name, colour and ground area, in the map's CRS.

**Maps of any size.** The map is polygonized in one pass of GDAL's ``GDALPolygonize`` over the
whole band (:func:`rasterio.features.shapes` on ``rasterio.band``): GDAL reads the map row by
row and closes each polygon where its clump ends, so a clump crossing any window or tile
boundary is one polygon. (Polygonizing window by window would cut every clump at the window
edges and need a dissolve afterwards.) Memory follows the number and vertices of the polygons,
not the raster's size: rasterio collects GDAL's polygons in an in-memory layer before handing
them out, so a map of salt-and-pepper noise makes one polygon per pixel; a minimum mapping unit
(:mod:`pipeline.mapping.mmu`) is what keeps the count down. Features are written to the
GeoPackage in batches under a temporary name, renamed into place when complete.

**Areas.** ``area_m2`` is the polygon's ground area: its planar area in the CRS's unit squared
times the unit's size in metres (a projected CRS), or its area on the CRS's ellipsoid
(:class:`pyproj.Geod`) for a geographic CRS, with each edge first split at every pixel so that
it follows the pixel rows exactly as :func:`~pipeline.inputs.pixel_area.row_areas_m2` measures
them. Either way, the areas of one class's polygons add up to that class's pixel area in the map
(``tests/test_polygons_output.py`` checks it). ``area_ha`` is the same in hectares.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.atomic import as_out_of_space
from pipeline.core.errors import OutputWriteError
from pipeline.inputs.class_table import NODATA_CLASS, ClassTable
from pipeline.inputs.pixel_area import check_area_crs, linear_unit_m, pyproj_crs

log = logging.getLogger(__name__)

LAYER = "classes"  # the GeoPackage layer the polygons are written to
FIELDS = ("class_id", "class_name", "color", "area_m2", "area_ha")
BATCH = 20_000  # polygons per write


def polygons_path_for(map_path: str | Path) -> Path:
    """``<dir>/<stem>.gpkg``: the default GeoPackage of a class map's polygons, beside it."""
    p = Path(map_path)
    return p.with_suffix(".gpkg")


def _batches(it: Iterator[tuple[dict, float]], n: int) -> Iterator[list[tuple[dict, float]]]:
    batch: list[tuple[dict, float]] = []
    for item in it:
        batch.append(item)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def polygon_areas_m2(geoms: Any, crs: Any, pixel_size: tuple[float, float]) -> np.ndarray:
    """Ground area in m² of each shapely polygon in ``geoms`` (array-like), in ``crs`` (see module docstring)."""
    import shapely

    geoms = np.asarray(geoms, dtype=object)
    if check_area_crs(crs, "map") == "projected":
        f = linear_unit_m(crs)
        return np.asarray(shapely.area(geoms), dtype=np.float64) * f * f
    geod = pyproj_crs(crs).get_geod()
    assert geod is not None  # check_area_crs refuses a geographic CRS without an ellipsoid
    step = min(abs(pixel_size[0]), abs(pixel_size[1]))
    dense = shapely.segmentize(geoms, step * 0.999)
    return np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in dense], dtype=np.float64)


def write_polygons(
    map_path: str | Path,
    out_path: str | Path,
    classes: ClassTable,
    connectivity: int = 4,
    layer: str = LAYER,
) -> dict:
    """Polygonize the class map at ``map_path`` into the GeoPackage ``out_path`` (layer ``layer``).

    One feature per clump of ``connectivity``-connected pixels of one class (pixels without data
    are left out), a MultiPolygon (8-connected clumps whose pixels touch only at a corner are
    valid only as several parts; 4-connected clumps are one part), with ``class_id``, ``class_name``, ``color`` (``#rrggbb``, for a data-defined
    style), ``area_m2`` and ``area_ha``, in the map's CRS. Returns ``{"path", "layer",
    "polygons", "area_ha": {class name: hectares}}``.
    """
    import pandas as pd
    import pyogrio
    import rasterio
    import shapely
    from rasterio.features import shapes

    map_path, out_path = Path(map_path), Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    names = dict(zip(classes.ids, classes.names))
    colors = dict(zip(classes.ids, classes.colors))
    tmp = out_path.with_name(f".{out_path.stem}.tmp{out_path.suffix}")
    tmp.unlink(missing_ok=True)
    n = 0
    by_class: dict[int, float] = {}
    try:
        with rasterio.open(map_path) as src:
            crs, pixel = src.crs, (src.transform.a, src.transform.e)
            check_area_crs(crs, map_path)
            crs_wkt = crs.to_wkt()
            feats = (
                (g, float(v))
                for g, v in shapes(rasterio.band(src, 1), connectivity=connectivity, transform=src.transform)
                if int(v) != NODATA_CLASS
            )
            for batch in _batches(feats, BATCH):
                geoms = shapely.from_geojson([_json(g) for g, _ in batch])
                if connectivity == 8:  # clumps joined at pixel corners: self-touching rings, made multi-part
                    geoms = _polygonal(shapely.make_valid(geoms))
                ids = np.array([int(v) for _, v in batch], dtype=np.int32)
                area = polygon_areas_m2(geoms, crs, pixel)
                for i, a in zip(ids, area):
                    by_class[int(i)] = by_class.get(int(i), 0.0) + float(a)
                _write(
                    tmp,
                    layer,
                    geoms,
                    pd.DataFrame(
                        {
                            "class_id": ids,
                            "class_name": [names.get(int(i), str(int(i))) for i in ids],
                            "color": [colors.get(int(i), "") for i in ids],
                            "area_m2": area,
                            "area_ha": area / 1e4,
                        }
                    ),
                    crs_wkt,
                    append=n > 0,
                )
                n += len(batch)
        if n == 0:  # a map without data still gives a readable, empty layer
            _write(
                tmp,
                layer,
                np.array([], dtype=object),
                pd.DataFrame({k: pd.Series(dtype=t) for k, t in zip(FIELDS, ("int32", str, str, float, float))}),
                crs_wkt,
                append=False,
            )
        os.replace(tmp, out_path)
    except (OSError, pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as e:
        full = as_out_of_space(e, out_path, what="the polygons", partial=tmp)
        if full is not None:
            raise full from e
        raise OutputWriteError(f"{out_path}: writing the polygons failed ({e})") from e
    finally:
        tmp.unlink(missing_ok=True)
    log.info("%s: %d polygons", out_path, n)
    return {
        "path": str(out_path),
        "layer": layer,
        "polygons": n,
        "connectivity": connectivity,
        "area_ha": {names.get(i, str(i)): a / 1e4 for i, a in sorted(by_class.items())},
    }


def _json(geom: dict) -> str:
    import json

    return json.dumps(geom)


def _write(path: Path, layer: str, geoms: Any, df: Any, crs_wkt: str, append: bool) -> None:
    import geopandas as gpd
    import pyogrio

    gdf = gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(list(geoms), crs=crs_wkt))
    pyogrio.write_dataframe(
        gdf, path, layer=layer, driver="GPKG", geometry_type="MultiPolygon", promote_to_multi=True, append=append
    )


def _polygonal(geoms: Any) -> Any:
    """The polygonal part of each geometry (``make_valid`` may add the lines where rings touched)."""
    import shapely

    out = np.asarray(geoms, dtype=object).copy()
    for i, g in enumerate(out):
        if shapely.get_type_id(g) == 7:  # GeometryCollection
            parts = [p for p in shapely.get_parts(g) if shapely.get_type_id(p) in (3, 6)]
            out[i] = shapely.union_all(parts)
    return out

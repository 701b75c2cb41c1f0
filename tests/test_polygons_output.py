"""A class map as polygons (pipeline.mapping.polygons): one feature per clump, joined across tile
boundaries, with class id, name, colour and ground area in the map's CRS; per class, the polygon
areas add up to the map's pixel area (recomputed here from pixel counts and pyproj)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from conftest import write_raster
from scipy import ndimage

from pipeline.evaluation.areas import class_pixels_and_areas
from pipeline.inputs.class_table import NODATA_CLASS, ClassTable
from pipeline.mapping.polygons import write_polygons

CLASSES = ClassTable.of([1, 2, 3], ["grass", "water", "bare soil"], ["#33a02c", "#1f78b4", "#d9b38c"])


def _map(seed: int = 0) -> np.ndarray:
    """300 x 530 (wider and taller than a 256-px tile): blocks of three classes, speckle, a no-data corner."""
    rng = np.random.default_rng(seed)
    m = np.repeat(np.repeat(rng.integers(1, 4, (30, 53)), 10, 0), 10, 1).astype(np.uint8)
    noise = rng.random(m.shape) < 0.02
    m[noise] = rng.integers(1, 4, int(noise.sum()))
    m[:20, :40] = NODATA_CLASS
    m[250, :] = 2  # a river crossing every tile column: one clump
    return m


@pytest.mark.parametrize("connectivity", [4, 8])
def test_polygon_areas_add_up_to_pixel_areas_projected(tmp_path, connectivity):
    m = _map()
    src = write_raster(tmp_path / "m.tif", m, crs="EPSG:32633", res=10.0, nodata=NODATA_CLASS)
    rec = write_polygons(src, tmp_path / "m.gpkg", CLASSES, connectivity)
    g = gpd.read_file(tmp_path / "m.gpkg", layer="classes")
    assert g.crs.to_epsg() == 32633 and set(g.geom_type) == {"MultiPolygon"} and g.is_valid.all()
    # pixel areas, independently: 100 m2 per valid pixel of the class
    for cid, name in zip(CLASSES.ids, CLASSES.names):
        mine = g[g["class_id"] == cid]
        assert set(mine["class_name"]) == {name}
        assert mine["area_m2"].sum() == pytest.approx(100.0 * int((m == cid).sum()), rel=1e-12)
        assert mine["area_ha"].sum() == pytest.approx(mine["area_m2"].sum() / 1e4)
        assert np.allclose(mine["area_m2"], mine.geometry.area)  # metres: planar area is ground area
    # one feature per clump of the chosen connectivity (scipy labels them independently)
    structure = np.ones((3, 3)) if connectivity == 8 else None
    clumps = sum(ndimage.label(m == c, structure=structure)[1] for c in CLASSES.ids)
    assert len(g) == rec["polygons"] == clumps
    river = g[(g["class_id"] == 2) & (g.geometry.bounds["maxx"] - g.geometry.bounds["minx"] >= 5300 - 1e-6)]
    assert len(river) == 1  # the river crosses three tiles and is still one polygon
    assert set(g["color"]) == set(CLASSES.colors)


def test_polygon_areas_add_up_to_pixel_areas_in_degrees(tmp_path):
    m = _map(1)
    src = write_raster(tmp_path / "g.tif", m, crs="EPSG:4326", origin=(10.0, 62.0), res=0.0005, nodata=NODATA_CLASS)
    write_polygons(src, tmp_path / "g.gpkg", CLASSES)
    g = gpd.read_file(tmp_path / "g.gpkg")
    assert g.crs.to_epsg() == 4326
    counts, area_ha = class_pixels_and_areas(src)
    for cid in CLASSES.ids:
        assert g.loc[g["class_id"] == cid, "area_ha"].sum() == pytest.approx(area_ha[cid], rel=1e-8)
    # and the class areas are ground areas: about 27 m x 55 m per pixel at 62 degrees north, not degrees
    assert 0.1 < sum(area_ha.values()) / sum(counts.values()) < 0.2


def test_feet_are_converted_to_square_metres(tmp_path):
    m = _map(2)[:100, :100]
    # NAD83 / California zone 6 (ftUS): a 10 ft pixel is 9.290 m2
    src = write_raster(
        tmp_path / "ft.tif", m, crs="EPSG:2230", origin=(6_000_000.0, 2_000_000.0), res=10.0, nodata=NODATA_CLASS
    )
    write_polygons(src, tmp_path / "ft.gpkg", CLASSES)
    g = gpd.read_file(tmp_path / "ft.gpkg")
    ft = 1200 / 3937
    assert g["area_m2"].sum() == pytest.approx(int((m != NODATA_CLASS).sum()) * (10 * ft) ** 2, rel=1e-9)


def test_a_map_without_data_gives_an_empty_layer(tmp_path):
    src = write_raster(tmp_path / "e.tif", np.full((20, 20), NODATA_CLASS, np.uint8), nodata=NODATA_CLASS)
    rec = write_polygons(src, tmp_path / "e.gpkg", CLASSES)
    g = gpd.read_file(tmp_path / "e.gpkg")
    assert rec["polygons"] == len(g) == 0 and list(g.columns)[:5] == [
        "class_id",
        "class_name",
        "color",
        "area_m2",
        "area_ha",
    ]
    with rasterio.open(src) as s:
        assert g.crs == s.crs
    assert not list(tmp_path.glob(".*"))

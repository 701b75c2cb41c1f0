"""Minimum mapping unit (pipeline.mapping.mmu): clumps smaller than the unit merge into their
largest neighbour, exactly as GDAL's sieve does on the whole array in memory, whatever the window
size the map was classified in; no data is never filled and never spreads."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from conftest import run_cli, write_raster
from rasterio.features import sieve
from test_mapping import _fit_tree

from pipeline.inputs.class_table import NODATA_CLASS, ClassTable
from pipeline.inputs.raster import RasterStack
from pipeline.mapping.classify import classify_raster
from pipeline.mapping.mmu import mmu_map_path, sieve_class_map
from pipeline.mapping.settings import MinimumMappingUnit, OutputsConfig

CLASSES = ClassTable.of([1, 2, 3], ["grass", "water", "bare soil"], ["#33a02c", "#1f78b4", "#d9b38c"])


def _known_clumps() -> np.ndarray:
    """A 40 x 50 map of class 1 with clumps whose fate under a 4-pixel unit is known by hand."""
    m = np.ones((40, 50), dtype=np.uint8)
    m[5:8, 5] = 2  # 3 px of water inside grass: removed -> grass
    m[20:22, 20:22] = 3  # 4 px of bare soil: kept (not smaller than 4)
    m[20:22, 22] = 2  # 2 px of water between bare soil (4 px) and grass (the rest): -> grass, the largest
    m[30:40, 30:50] = 3  # a large bare-soil field
    m[29, 35] = 2  # 1 px of water on the field's edge: largest neighbour is grass (1000+ px) -> grass
    m[0:10, 40:50] = NODATA_CLASS  # no data in a corner
    m[10, 45] = 2  # 1 px of water touching only the no-data corner and grass -> grass, never no data
    m[15, 15] = NODATA_CLASS  # a one-pixel hole of no data stays a hole
    return m


def _sieved(tmp_path, arr: np.ndarray, spec: str, connectivity: int = 4, **raster) -> tuple[np.ndarray, dict]:
    src = write_raster(tmp_path / "map.tif", arr, nodata=NODATA_CLASS, **raster)
    rec = sieve_class_map(src, mmu_map_path(src), CLASSES, MinimumMappingUnit.parse(spec), connectivity)
    with rasterio.open(rec["path"]) as s:
        return s.read(1), rec


def test_known_clumps_merge_into_their_largest_neighbour(tmp_path):
    m = _known_clumps()
    got, rec = _sieved(tmp_path, m, "4")
    want = m.copy()
    want[5:8, 5] = 1
    want[20:22, 22] = 1
    want[29, 35] = 1
    want[10, 45] = 1
    np.testing.assert_array_equal(got, want)
    assert rec["mmu_pixels"] == 4 and rec["changed_pixels"] == int((got != m).sum()) == 7
    assert rec["valid_pixels"] == int((m != NODATA_CLASS).sum())
    # ... which is what GDAL's sieve gives on the whole array in memory
    np.testing.assert_array_equal(got, sieve(m, 4, mask=m != NODATA_CLASS, connectivity=4))


def test_mmu_map_is_a_class_map_with_its_unit_recorded(tmp_path):
    got, rec = _sieved(tmp_path, _known_clumps(), "0.04ha")  # 10 m pixels: 400 m2 = 4 px
    assert rec["mmu_pixels"] == 4 and rec["mmu"] == "0.04 ha"
    with rasterio.open(rec["path"]) as s:
        assert s.tags()["MINIMUM_MAPPING_UNIT"] == "0.04 ha" and s.tags()["MMU_PIXELS"] == "4"
        assert s.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and s.colormap(1)[2][:3] == (31, 120, 180)
    for side in ("map_mmu.qml", "map_mmu.clr", "map_mmu.tif.aux.xml", "map_mmu_legend.png"):
        assert (tmp_path / side).is_file(), side
    assert not list(tmp_path.glob(".*")), "temporaries left behind"


@pytest.mark.parametrize("connectivity", [4, 8])
def test_random_map_equals_gdal_sieve_of_the_whole_array(tmp_path, connectivity):
    """Salt-and-pepper on blocks, wider than a 256-px tile so clumps cross tile boundaries."""
    rng = np.random.default_rng(3)
    m = np.repeat(np.repeat(rng.integers(1, 4, (70, 100)), 4, 0), 4, 1).astype(np.uint8)  # 280 x 400
    noise = rng.random(m.shape) < 0.1
    m[noise] = rng.integers(1, 4, int(noise.sum()))
    m[:30, :50] = NODATA_CLASS
    got, rec = _sieved(tmp_path, m, "12", connectivity)
    np.testing.assert_array_equal(got, sieve(m, 12, mask=m != NODATA_CLASS, connectivity=connectivity))
    assert (got[:30, :50] == NODATA_CLASS).all() and rec["changed_pixels"] > 100


def test_area_units_become_pixels_through_the_pixel_area(tmp_path):
    assert MinimumMappingUnit.parse("5000m2").pixels(100.0) == 50  # exactly 50 pixels, not 51
    assert MinimumMappingUnit.parse("0.5ha").pixels(30 * 30) == 6  # 5000 / 900 = 5.6 -> 6
    assert MinimumMappingUnit.parse("1 km²").pixels(100.0) == 10_000
    assert MinimumMappingUnit.parse(7).pixels(1.0) == MinimumMappingUnit.parse("7px").pixels(99.0) == 7
    # in degrees: the pixel area of the map's middle row (about 111 m x 55 m at 60 degrees north)
    _, rec = _sieved(tmp_path, _known_clumps(), "2ha", crs="EPSG:4326", origin=(10.0, 60.0), res=0.001)
    from pyproj import Geod

    lat = 60.0 - 0.001 * 20  # middle row's top edge
    area = abs(
        Geod(ellps="WGS84").polygon_area_perimeter([10, 10.001, 10.001, 10], [lat, lat, lat - 0.001, lat - 0.001])[0]
    )
    assert rec["pixel_area_m2"] == pytest.approx(area, rel=1e-9)
    assert rec["mmu_pixels"] == int(np.ceil(20_000 / area))


@pytest.mark.parametrize("bad", ["half a hectare", "0", "-3", "2.5", "4 acres", True])
def test_a_bad_unit_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="minimum mapping unit"):
        OutputsConfig(mmu=bad)


def test_mmu_larger_than_the_map_is_an_input_error(tmp_path):
    from pipeline.core.errors import InputError

    with pytest.raises(InputError, match="more than the whole map"):
        _sieved(tmp_path, _known_clumps(), "3000")


def test_mmu_of_a_classified_map_does_not_depend_on_the_window_size(tmp_path):
    """Classified in 16-px windows or in one window: the same MMU map, equal to the whole-array sieve."""
    rng = np.random.default_rng(5)  # two halves whose spectra overlap: the tree's map is speckled
    left = np.arange(80) < 40
    data = np.stack([np.where(left, 1000, 1300) + rng.integers(0, 600, (60, 80)) for _ in range(3)]).astype(np.uint16)
    data[:, :5, :5] = 0
    path = write_raster(tmp_path / "scene.tif", data, nodata=0, descriptions=["b1", "b2", "b3"])
    with RasterStack.open(path) as stack:
        model = _fit_tree(stack, tmp_path)
        got = {}
        for ws in (16, 1000):
            raw = tmp_path / f"w{ws}.tif"
            classify_raster(model, stack, raw, window_size=ws, workers=2, progress=False)
            rec = sieve_class_map(raw, mmu_map_path(raw), CLASSES, MinimumMappingUnit(5), 4)
            with rasterio.open(raw) as r, rasterio.open(rec["path"]) as s:
                raw_arr, got[ws] = r.read(1), s.read(1)
            np.testing.assert_array_equal(got[ws], sieve(raw_arr, 5, mask=raw_arr != NODATA_CLASS))
    np.testing.assert_array_equal(got[16], got[1000])
    assert rec["changed_pixels"] > 0  # the tree's speckle was there to remove


def test_map_command_writes_the_mmu_map_and_polygons_beside_the_map(tmp_path):
    """End to end: a model saved by 0.1.0 maps its scene with --mmu and --polygons."""
    import geopandas as gpd
    from scipy import ndimage
    from test_saved_models_stay_loadable import DATA

    out = tmp_path / "rf.tif"
    proc = run_cli(
        "map",
        "--model",
        DATA / "random_forest.skops",
        "--raster",
        DATA / "scene.tif",
        "--out",
        out,
        "--mmu",
        "0.2ha",
        "--polygons",
        tmp_path / "rf.gpkg",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(out) as r, rasterio.open(tmp_path / "rf_mmu.tif") as s:
        raw, mmu = r.read(1), s.read(1)
        res = abs(r.transform.a * r.transform.e)
    np.testing.assert_array_equal(mmu, sieve(raw, int(np.ceil(2000 / res)), mask=raw != NODATA_CLASS))
    polys = gpd.read_file(tmp_path / "rf.gpkg")
    # one polygon per 4-connected clump of the MMU map (counted here by scipy's labelling)
    clumps = sum(ndimage.label(mmu == c)[1] for c in np.unique(mmu) if c != NODATA_CLASS)
    assert len(polys) == clumps and "wrote" in proc.stdout and "rf_mmu.tif" in proc.stdout


def test_map_command_refuses_a_bad_mmu_and_a_non_geopackage(tmp_path):
    from test_saved_models_stay_loadable import DATA

    args = ["map", "--model", DATA / "random_forest.skops", "--raster", DATA / "scene.tif", "--out", tmp_path / "m.tif"]
    proc = run_cli(*args, "--mmu", "lots")
    assert proc.returncode == 2 and "--mmu" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli(*args, "--polygons", tmp_path / "m.shp")
    assert proc.returncode == 2 and "GeoPackage" in proc.stderr
    assert not (tmp_path / "m.tif").exists()

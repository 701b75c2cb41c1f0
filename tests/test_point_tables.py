"""Tables of points, geometries that need repair, label rasters with 0 as background and short
band lists (issue #23), at the level of the library: ingestion on small rasters written here,
each expected pixel computed independently from the coordinates and the raster's transform."""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from conftest import write_raster
from pydantic import ValidationError
from shapely.geometry import Point

from pipeline.core.errors import InputError
from pipeline.core.text import short_list
from pipeline.inputs.labels import ingest_labels
from pipeline.inputs.raster import RasterStack
from pipeline.inputs.settings import ClassSpec, LabelConfig

CLASSES = [ClassSpec(id=1, name="a"), ClassSpec(id=2, name="b")]
ORIGIN = (500000.0, 4000000.0)  # EPSG:32633, 10 m pixels (conftest.write_raster)


@pytest.fixture
def image(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    return write_raster(tmp_path / "img.tif", rng.integers(1, 100, (2, 40, 40)).astype(np.uint16))


def _ingest(image: Path, **labels) -> tuple[pd.DataFrame, object]:
    with RasterStack.open(image) as st:
        return ingest_labels(LabelConfig(**labels), Path(labels["path"]), CLASSES, st, progress=False)


def _pixel(x: float, y: float) -> tuple[int, int]:
    """(row, col) of a point on the 10 m grid at ORIGIN, by arithmetic."""
    return int((ORIGIN[1] - y) // 10), int((x - ORIGIN[0]) // 10)


# Points on pixels (row, col): (3, 5) a, (20, 30) b, (35, 2) a.
PIXELS = [(3, 5, "a"), (20, 30, "b"), (35, 2, "a")]
XY = [(ORIGIN[0] + 10 * c + 4.0, ORIGIN[1] - 10 * r - 6.0, k) for r, c, k in PIXELS]


def _expected() -> set[tuple[int, int, str]]:
    return {(*_pixel(x, y), k) for x, y, k in XY}


def _got(samples: pd.DataFrame) -> set[tuple[int, int, str]]:
    return set(zip(samples["row"], samples["col"], samples["class_name"]))


@pytest.mark.parametrize(
    "names,sep,suffix",
    [(("X", "Y"), ";", ".csv"), (("easting", "northing"), "\t", ".tsv"), (("E", "N"), ",", ".txt")],
)
def test_coordinate_columns_are_found_whatever_their_case_and_separator(tmp_path, image, names, sep, suffix):
    table = pd.DataFrame({names[0]: [p[0] for p in XY], names[1]: [p[1] for p in XY], "cls": [p[2] for p in XY]})
    path = tmp_path / f"points{suffix}"
    table.to_csv(path, sep=sep, index=False)
    samples, rep = _ingest(image, path=str(path), field="cls")
    assert _got(samples) == _expected()
    # x/y names carry no CRS: the image's
    assert rep.coordinates == {"x": names[0], "y": names[1], "crs": "EPSG:32633", "crs_from": "image"}


def test_lon_lat_default_to_wgs84_and_labels_crs_says_otherwise(tmp_path, image):
    from pyproj import Transformer

    lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(
        [p[0] for p in XY], [p[1] for p in XY]
    )
    path = tmp_path / "points.csv"
    pd.DataFrame({"lon": lon, "lat": lat, "cls": [p[2] for p in XY]}).to_csv(path, index=False)
    samples, rep = _ingest(image, path=str(path), field="cls")
    assert _got(samples) == _expected() and rep.coordinates["crs"] == "EPSG:4326"
    # the same table in metres with other names: labels.x, labels.y and labels.crs
    pq = tmp_path / "points.parquet"
    pd.DataFrame({"px": [p[0] for p in XY], "py": [p[1] for p in XY], "cls": [p[2] for p in XY]}).to_parquet(pq)
    samples, rep = _ingest(image, path=str(pq), field="cls", x="px", y="py", crs="EPSG:32633")
    assert _got(samples) == _expected() and rep.coordinates["crs_from"] == "labels.crs"
    with pytest.raises(
        InputError, match=r"points.parquet: no geometry and no coordinate columns .*\(columns: px, py, cls\)"
    ):
        _ingest(image, path=str(pq), field="cls")
    with pytest.raises(InputError, match="labels.x: .*points.parquet has no column 'qx'"):
        _ingest(image, path=str(pq), field="cls", x="qx", y="py")


def test_geoparquet_and_vector_files_without_geometry(tmp_path, image):
    import pyogrio

    pts = [Point(x, y) for x, y, _ in XY]
    gpq = tmp_path / "points.parquet"
    gpd.GeoDataFrame({"cls": [p[2] for p in XY]}, geometry=pts, crs="EPSG:32633").to_parquet(gpq)
    samples, rep = _ingest(image, path=str(gpq), field="cls")
    assert _got(samples) == _expected() and rep.geometry == "points" and rep.coordinates == {}
    # a GeoPackage table without geometry (an attribute table) is read as points too
    attr = tmp_path / "table.gpkg"
    pyogrio.write_dataframe(
        pd.DataFrame({"x": [p[0] for p in XY], "y": [p[1] for p in XY], "cls": [p[2] for p in XY]}), attr
    )
    samples, rep = _ingest(image, path=str(attr), field="cls", crs="EPSG:32633")
    assert _got(samples) == _expected() and rep.kind == "vector" and rep.coordinates["x"] == "x"
    # labels.x names coordinate columns: for a file with geometries it is a mistake, said so
    with pytest.raises(InputError, match="labels.x: .*has geometries of its own"):
        _ingest(image, path=str(gpq), field="cls", x="x", y="y")


def test_points_outside_the_image_in_another_crs_hint_at_labels_crs(tmp_path, image):
    path = tmp_path / "points.csv"
    pd.DataFrame({"x": [12.5, 12.6], "y": [45.1, 45.2], "cls": ["a", "b"]}).to_csv(path, index=False)
    with pytest.raises(
        InputError, match=r"do not overlap the raster .*read in EPSG:32633 \(from the image\): set labels.crs"
    ):
        _ingest(image, path=str(path), field="cls")


def test_label_settings_are_checked_once(tmp_path):
    with pytest.raises(ValidationError, match="give both"):
        LabelConfig(path="p.csv", x="lon")
    with pytest.raises(ValidationError, match="not a CRS"):
        LabelConfig(path="p.csv", crs="EPSG:99999999")
    assert LabelConfig(path="p.csv").is_table and LabelConfig(path="l.jp2").is_raster


def test_a_collapsed_polygon_and_a_bow_tie(tmp_path, image):
    from shapely.geometry import Polygon, box

    x0, y0 = ORIGIN[0] + 23, ORIGIN[1] - 20  # no pixel centre on an edge or a diagonal
    bow = Polygon([(x0, y0), (x0 + 100, y0 - 100), (x0 + 100, y0), (x0, y0 - 100)])  # rows/cols 2..12
    flat = Polygon([(x0 + 200, y0), (x0 + 250, y0), (x0 + 300, y0)])
    square = box(ORIGIN[0] + 200, ORIGIN[1] - 300, ORIGIN[0] + 250, ORIGIN[1] - 250)  # rows 25..29, cols 20..24
    path = tmp_path / "p.gpkg"
    gpd.GeoDataFrame({"cls": ["a", "b", "b"]}, geometry=[bow, flat, square], crs="EPSG:32633").to_file(path)
    samples, rep = _ingest(image, path=str(path), field="cls")
    assert rep.features_per_class["a"]["repaired"] == 1 and rep.features_per_class["b"]["invalid_geometry"] == 1
    # the repaired bow tie labels the pixel centres inside either triangle, as shapely counts them
    import shapely

    rr, cc = np.mgrid[0:40, 0:40]
    centres = shapely.points(ORIGIN[0] + 10 * cc.ravel() + 5, ORIGIN[1] - 10 * rr.ravel() - 5)
    inside = shapely.contains(shapely.make_valid(bow), centres)
    a = samples[samples["class_name"] == "a"]
    assert set(zip(a["row"], a["col"])) == set(zip(rr.ravel()[inside], cc.ravel()[inside]))


def test_a_label_raster_keeps_0_as_a_class_or_as_unknown_when_it_says_so(tmp_path, image):
    lab = np.zeros((40, 40), np.uint8)
    lab[:10] = 1
    lab[30:] = 2
    declared = write_raster(tmp_path / "declared.tif", lab, nodata=255)
    with pytest.raises(InputError, match="values not in the class table: 0"):
        _ingest(image, path=str(declared))  # a declared nodata: 0 is a value like any other
    plain = write_raster(tmp_path / "plain.tif", lab)
    with RasterStack.open(image) as st:
        three = [*CLASSES, ClassSpec(id=0, name="zero")]
        samples, rep = ingest_labels(LabelConfig(path=str(plain)), plain, three, st, progress=False)
    assert rep.background_pixels == 0 and int((samples["class_id"] == 0).sum()) == int((lab == 0).sum())
    samples, rep = _ingest(image, path=str(plain))
    assert rep.background_pixels == int((lab == 0).sum()) and len(samples) == int((lab > 0).sum())


def test_long_band_lists_are_shortened(tmp_path, caplog):
    from pipeline.mapping.model_inputs import open_for_model

    assert short_list([f"B{i:03d}" for i in range(1, 121)]) == "B001, B002, B003, B004, B005, ..., B120 (120 in all)"
    assert short_list(["a", "b"]) == "a, b"
    path = write_raster(tmp_path / "cube.tif", np.ones((120, 4, 4), np.uint16))
    want = [f"wl_{i}" for i in range(120)]
    with caplog.at_level(logging.WARNING), open_for_model(path, want) as st:
        assert st.band_names == want
    (line,) = [r.getMessage() for r in caplog.records if "carry no names" in r.getMessage()]
    assert "wl_0, wl_1, wl_2, wl_3, wl_4, ..., wl_119 (120 in all)" in line and len(line) < 200


def test_a_model_aligned_to_one_of_its_band_files_maps_on_that_files_grid(tmp_path):
    """rasters.align_to naming the 20 m band file: map time warps onto the file at that position."""
    from pipeline.mapping.model_inputs import open_for_model

    fine = write_raster(tmp_path / "f.tif", np.ones((8, 8), np.uint16), res=10.0)
    coarse = write_raster(tmp_path / "c.tif", np.ones((4, 4), np.uint16), res=20.0)
    with RasterStack.open([fine, coarse], align_to=coarse, warn=False) as st:
        al = st.alignment
    assert al["rule"] == "align_to" and al["reference_index"] == 1 and st.grid.res == (20.0, 20.0)
    other_fine = write_raster(tmp_path / "f2.tif", np.ones((8, 8), np.uint16), res=10.0)
    other_coarse = write_raster(tmp_path / "c2.tif", np.ones((4, 4), np.uint16), res=20.0)
    with open_for_model([other_fine, other_coarse], ["f", "c"], band_names=["f", "c"], alignment=al) as st:
        assert st.grid.res == (20.0, 20.0) and st.alignment["reference"] == str(other_coarse)
    with rasterio.open(other_coarse) as src:  # the grid is the file's, not the training file's path
        assert st.grid.transform == src.transform


# ----------------------------------------------------------------------------- band files matched by name
def _band_files(folder: Path, stems: list[str]) -> list[Path]:
    """One 4 x 4 single-band file per stem, its pixels all equal to its position + 1 (so a stack's
    band shows which file it came from)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [write_raster(folder / f"{s}.tif", np.full((4, 4), i + 1, np.uint16)) for i, s in enumerate(stems)]


def _sources(st: RasterStack, files: list[Path]) -> list[str]:
    """The file stem each band of ``st`` was read from."""
    block = st.read(rasterio.windows.Window(0, 0, 4, 4))
    return [files[int(block[b, 0, 0]) - 1].stem for b in range(st.count)]


def test_band_files_are_matched_to_the_models_bands_by_whole_words_of_their_names(tmp_path, caplog):
    from pipeline.mapping.model_inputs import open_for_model

    files = _band_files(tmp_path, ["LC09_SR_B10", "LC09_SR_B2", "LC09_SR_B1", "LC09_QA"])  # B1 is not in B10
    with caplog.at_level(logging.INFO), open_for_model(files, ["B1", "B2", "B10"]) as st:
        assert st.band_names == ["B1", "B2", "B10"]
        assert _sources(st, files) == ["LC09_SR_B1", "LC09_SR_B2", "LC09_SR_B10"]
    (line,) = [r.getMessage() for r in caplog.records if "by their names" in r.getMessage()]
    assert "LC09_SR_B1.tif as B1, LC09_SR_B2.tif as B2, LC09_SR_B10.tif as B10 (not used: LC09_QA.tif)" in line


def test_band_files_are_found_again_by_the_training_files_names(tmp_path):
    """Band names that are no words of the file names (``blue``, ``red``, ``nir``): the model's
    record of its training files (the alignment's ``files``) matches the stems."""
    from pipeline.mapping.model_inputs import open_for_model

    trained = _band_files(tmp_path / "train", ["S2_B02", "S2_B04", "S2_B08"])
    with RasterStack.open(trained, warn=False) as st:
        al = st.alignment
    assert [Path(p).name for p in al["files"]] == ["S2_B02.tif", "S2_B04.tif", "S2_B08.tif"]
    files = _band_files(tmp_path / "new", ["S2_B08", "S2_B02", "S2_B04"])
    with open_for_model(files, ["blue", "red", "nir"], alignment=al) as st:
        assert _sources(st, files) == ["S2_B02", "S2_B04", "S2_B08"]


@pytest.mark.parametrize(
    ("stems", "want", "named"),
    [
        (["S2_B02", "S2_B02_old", "S2_B04"], ["B02", "B04"], "B02 in S2_B02.tif and S2_B02_old.tif"),
        (["red_nir", "blue"], ["red", "nir", "blue"], "red_nir.tif for red and nir"),
        (
            ["S2_B02", "S2_B04", "S2_B04_old"],
            ["B02", "B04", "B08"],
            "B04 in S2_B04.tif and S2_B04_old.tif; no file for B08",
        ),
    ],
)
def test_band_files_naming_the_models_bands_ambiguously_are_an_input_error(tmp_path, stems, want, named):
    from pipeline.mapping.model_inputs import open_for_model

    with pytest.raises(InputError, match="ambiguously") as err:
        open_for_model(_band_files(tmp_path, stems), want)
    assert named in str(err.value) and "\n" not in str(err.value)


def test_band_files_taken_in_order_are_each_named_with_their_band(tmp_path, caplog):
    """Names that identify no band: taken in the order given, and the warning says which file is
    which band for every file (a list shortened past a few would hide a mix-up)."""
    from pipeline.mapping.model_inputs import open_for_model

    files = _band_files(tmp_path, [f"f{i}" for i in (3, 1, 2, 4, 5, 6, 7, 8)])
    want = [f"B{i:02d}" for i in range(1, 9)]
    with caplog.at_level(logging.WARNING), open_for_model(files, want) as st:
        assert _sources(st, files) == [p.stem for p in files]
    (line,) = [r.getMessage() for r in caplog.records if "order given" in r.getMessage()]
    assert ", ".join(f"{p.name} as {w}" for p, w in zip(files, want)) in line

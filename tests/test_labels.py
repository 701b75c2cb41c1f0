import geopandas as gpd
import numpy as np
import pytest
import rasterio
from conftest import write_raster
from rasterio import features
from shapely.geometry import Point, box

from pipeline.core.errors import InputError
from pipeline.inputs.labels import ingest_labels
from pipeline.inputs.raster import RasterStack
from pipeline.inputs.settings import ClassSpec, LabelConfig

CLASSES = [ClassSpec(id=1, name="water"), ClassSpec(id=2, name="forest"), ClassSpec(id=5, name="urban")]


def _polys(path, crs="EPSG:32633", to=None):
    # Raster: origin (500000, 4000000), 10 m, 80 x 60 px -> x 500000..500800, y 3999400..4000000.
    g = gpd.GeoDataFrame(
        {"cls": ["water", "Forest", "urban", "forest"], "code": [1, 2, 5, 1]},
        geometry=[
            box(500055, 3999805, 500205, 3999955),
            box(500405, 3999505, 500555, 3999705),
            box(500605, 3999805, 500705, 3999905),
            box(500255, 3999455, 500355, 3999555),
        ],
        crs=crs,
    )
    if to:
        g = g.to_crs(to)
    g.to_file(path)
    return path


def _reference(stack, gdf_path):
    """Full-grid rasterisation with rasterio, independent of the windowed code."""
    g = gpd.read_file(gdf_path).to_crs(stack.grid.crs)
    return features.rasterize(
        ((geom, i) for i, geom in enumerate(g.geometry)),
        out_shape=(60, 80),
        transform=stack.grid.transform,
        fill=-1,
        dtype="int32",
    )


@pytest.mark.parametrize("window", [16, 1024])
def test_polygons_in_other_crs_match_full_rasterisation(tmp_path, synthetic_scene, window):
    path, _ = synthetic_scene
    lp = _polys(tmp_path / "labels.gpkg", to="EPSG:4326")
    with RasterStack.open(path) as stack:
        s, rep = ingest_labels(
            LabelConfig(path=str(lp), field="cls"), lp, CLASSES, stack, window_size=window, progress=False
        )
        ref = _reference(stack, lp)
    got = np.full((60, 80), -1)
    got[s.row, s.col] = s.group
    # The corner 5 x 5 is nodata in the scene: dropped and counted.
    assert rep.pixels_under_nodata == int((ref[:5, :5] >= 0).sum())
    ref[:5, :5] = -1
    np.testing.assert_array_equal(got, ref)
    assert rep.pixels_per_class == {
        "water": int((ref == 0).sum()),
        "forest": int(((ref == 1) | (ref == 3)).sum()),
        "urban": int((ref == 2).sum()),
    }
    # Coordinates are pixel centres in the raster CRS.
    with rasterio.open(path) as src:
        xs, ys = rasterio.transform.xy(src.transform, s.row.to_numpy(), s.col.to_numpy())
    np.testing.assert_allclose(s.x, xs)
    np.testing.assert_allclose(s.y, ys)
    assert set(s.class_name) == {"water", "forest", "urban"}  # names match case-insensitively


def test_id_name_disagreement_is_reported_and_dropped(tmp_path, synthetic_scene):
    path, _ = synthetic_scene
    lp = _polys(tmp_path / "labels.gpkg")
    with RasterStack.open(path) as stack:
        s, rep = ingest_labels(
            LabelConfig(path=str(lp), field="cls", id_field="code"), lp, CLASSES, stack, progress=False
        )
    assert rep.id_name_mismatches == 1  # the last polygon says forest but code 1 (water)
    assert rep.mismatch_examples[0]["cls"] == "forest" and rep.mismatch_examples[0]["code"] == "1"
    assert 3 not in set(s.group)
    assert any("disagree" in w for w in rep.warnings())


def test_unknown_labels_error_or_drop(tmp_path, synthetic_scene):
    path, _ = synthetic_scene
    lp = _polys(tmp_path / "labels.gpkg")
    two = CLASSES[:2]
    with RasterStack.open(path) as stack:
        # the line names the config key that lets the run go on (the drop below shows that it works)
        with pytest.raises(
            InputError,
            match=r"labels.gpkg: field 'cls' has labels not in the class table: 'urban' "
            r"\(1 rows\); .*set labels.on_unknown: drop",
        ):
            ingest_labels(LabelConfig(path=str(lp), field="cls"), lp, two, stack, progress=False)
        s, rep = ingest_labels(
            LabelConfig(path=str(lp), field="cls"), lp, two, stack, on_unknown="drop", progress=False
        )
    assert rep.unknown_labels == {"urban": 1}
    assert set(s.class_name) == {"water", "forest"}


def test_points_and_overlaps(tmp_path, synthetic_scene):
    path, _ = synthetic_scene
    pts = gpd.GeoDataFrame(
        {"cls": ["water", "forest", "forest", "forest"]},
        geometry=[Point(500105, 3999905), Point(500455, 3999555), Point(500456, 3999556), Point(500705, 3999505)],
        crs="EPSG:32633",
    )
    pp = tmp_path / "pts.shp"
    pts.to_file(pp)
    with RasterStack.open(path) as stack:
        s, rep = ingest_labels(LabelConfig(path=str(pp), field="cls"), pp, CLASSES[:2], stack, progress=False)
    # Two points fall in one pixel: ambiguous, dropped and counted.
    assert len(s) == 2 and rep.pixels_overlapping_geometries == 1
    assert list(zip(s.row, s.col, s.group)) == [(9, 10, 0), (49, 70, 3)]


def test_label_raster_on_other_grid(tmp_path, synthetic_scene):
    path, _ = synthetic_scene
    # Label raster at 20 m in the same CRS, class ids with 0 as nodata, and a value not in the table.
    lab = np.zeros((30, 40), dtype=np.uint8)
    lab[5:10, 5:10] = 1
    lab[20:25, 30:35] = 2
    lp = write_raster(tmp_path / "lab.tif", lab, res=20.0, nodata=0)
    with RasterStack.open(path) as stack:
        s, rep = ingest_labels(LabelConfig(path=str(lp)), lp, CLASSES[:2], stack, progress=False)
    assert rep.kind == "raster"
    assert rep.pixels_per_class == {"water": 100, "forest": 100}  # each 20 m pixel -> 4 pixels of 10 m
    # Groups are one class each and never straddle the fixed 32-pixel grid; the forest square
    # (rows 40-49, cols 60-69) is cut in two by the grid line at col 64.
    assert s.groupby("group").class_id.nunique().max() == 1
    cells = s.assign(cell=(s.row // 32) * 100 + s.col // 32)
    assert cells.groupby("group").cell.nunique().max() == 1
    assert s.group.nunique() == 3
    assert rep.label_pixels_outside_raster == {}
    # a label raster larger than the image: its labelled pixels beyond the image are counted per class
    big = np.zeros((40, 60), dtype=np.uint8)
    big[:30, :40] = lab
    big[33:36, 45:50] = 2  # 15 forest pixels south-east of the image
    big[2:4, 50:52] = 1  # 4 water pixels east of it
    lpb = write_raster(tmp_path / "big.tif", big, res=20.0, nodata=0)
    with RasterStack.open(path) as stack:
        _, rep = ingest_labels(LabelConfig(path=str(lpb)), lpb, CLASSES[:2], stack, progress=False)
    assert rep.label_pixels_outside_raster == {"water": 4, "forest": 15}
    assert any("19 labelled pixels lie outside the image (water 4, forest 15)" in w for w in rep.warnings())
    lab[0, 39] = 9
    lp2 = write_raster(tmp_path / "lab2.tif", lab, res=20.0, nodata=0)
    with (
        RasterStack.open(path) as stack,
        pytest.raises(InputError, match="values not in the class table: 9;.*labels.on_unknown: drop"),
    ):
        ingest_labels(LabelConfig(path=str(lp2)), lp2, CLASSES[:2], stack, progress=False)
    with RasterStack.open(path) as stack:
        s2, rep2 = ingest_labels(LabelConfig(path=str(lp2)), lp2, CLASSES[:2], stack, on_unknown="drop", progress=False)
    assert rep2.unknown_labels and set(s2.class_name) == {"water", "forest"}
    # A label raster with a CRS but no geotransform cannot be placed on the image grid.
    from rasterio.errors import NotGeoreferencedWarning

    lp3 = tmp_path / "lab3.tif"
    with (
        pytest.warns(NotGeoreferencedWarning),
        rasterio.open(lp3, "w", driver="GTiff", width=40, height=30, count=1, dtype="uint8", crs="EPSG:32633") as d,
    ):
        d.write(lab[None])
    with RasterStack.open(path) as stack, pytest.raises(InputError, match="lab3.tif: label raster has no geotransform"):
        ingest_labels(LabelConfig(path=str(lp3)), lp3, CLASSES[:2], stack, progress=False)


def test_bad_label_files(tmp_path, synthetic_scene):
    path, _ = synthetic_scene
    lp = _polys(tmp_path / "labels.gpkg")
    far = gpd.read_file(lp)
    far["geometry"] = far.geometry.translate(1e5, 0)
    fp = tmp_path / "far.gpkg"
    far.to_file(fp)
    with RasterStack.open(path) as stack:
        with pytest.raises(InputError, match="no field 'klass'"):
            ingest_labels(LabelConfig(path=str(lp), field="klass"), lp, CLASSES, stack, progress=False)
        with pytest.raises(InputError, match="do not overlap the raster"):
            ingest_labels(LabelConfig(path=str(fp), field="cls"), fp, CLASSES, stack, progress=False)
        with pytest.raises(InputError, match="label file not found"):
            ingest_labels(LabelConfig(path="x.gpkg", field="cls"), tmp_path / "x.gpkg", CLASSES, stack)
        extra = CLASSES + [ClassSpec(id=9, name="snow")]
        with pytest.raises(InputError, match="class 'snow' has no labelled pixels"):
            ingest_labels(
                LabelConfig(path=str(lp), field="cls"), lp, extra, stack, progress=False, on_empty_class="error"
            )
        # by default the class is left out, with the reason
        _, rep = ingest_labels(LabelConfig(path=str(lp), field="cls"), lp, extra, stack, progress=False)
        assert rep.classes_without_labels == {"snow": "no feature of the label file has this class"}
        assert any("'snow' has no usable labels" in w for w in rep.warnings())

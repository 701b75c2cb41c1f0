import shutil

import numpy as np
import pandas as pd
import pytest
import rasterio

from pipeline.inputs.class_table import NODATA_CLASS
from pipeline.inputs.raster import RasterStack
from pipeline.mapping.classify import classify_raster
from pipeline.models import load_model
from pipeline.models.base import ModelMeta, TrainingData
from pipeline.models.settings import DecisionTreeConfig
from pipeline.models.trees import DecisionTreeModel
from pipeline.sampling.patches import extract_patches, open_patches


def _fit_tree(stack, tmp_path):
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(5, 60, 300), rng.integers(5, 80, 300)
    y = np.where(cols < 40, 1, 2)
    store = open_patches(
        extract_patches(stack, pd.DataFrame({"row": rows, "col": cols}), 1, tmp_path / "p.npy", progress=False)
    )
    meta = ModelMeta("decision_tree", stack.band_names, [1, 2], ["left", "right"], ["#ff0000", "#0000ff"], 1)
    td = TrainingData(store, y, np.arange(300), np.zeros((300, 2)), stack.band_names)
    return DecisionTreeModel(DecisionTreeConfig(), meta, seed=0).fit(td)


def test_map_grid_colormap_nodata_and_window_invariance(tmp_path, synthetic_scene):
    path, data = synthetic_scene
    with RasterStack.open(path) as stack:
        model = _fit_tree(stack, tmp_path)
        a = classify_raster(
            model, stack, tmp_path / "a.tif", tmp_path / "a_conf.tif", window_size=16, workers=2, progress=False
        )
        classify_raster(model, stack, tmp_path / "b.tif", window_size=1000, workers=1, progress=False)
    assert a["pixels"] == 60 * 80 and a["mpx_per_s"] > 0
    with rasterio.open(path) as src, rasterio.open(tmp_path / "a.tif") as m, rasterio.open(tmp_path / "b.tif") as m2:
        assert (m.crs, m.transform, m.width, m.height) == (src.crs, src.transform, src.width, src.height)
        assert m.dtypes[0] == "uint8" and m.nodata == NODATA_CLASS
        assert m.colormap(1)[1] == (255, 0, 0, 255) and m.colormap(1)[2] == (0, 0, 255, 255)
        assert m.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        labels = m.read(1)
        np.testing.assert_array_equal(labels, m2.read(1))
    assert (labels[:5, :5] == NODATA_CLASS).all()
    # Every valid pixel equals the model applied to that pixel's own values.
    flat = data.reshape(3, -1).T.astype(np.float32)
    expect = model.estimator.predict(flat).reshape(60, 80)
    expect[:5, :5] = NODATA_CLASS
    np.testing.assert_array_equal(labels, expect)
    with rasterio.open(tmp_path / "a_conf.tif") as c:  # uint8 whole percent, 255 where no data
        assert (c.dtypes[0], c.nodata, c.units[0]) == ("uint8", 255, "%") and "percent" in c.descriptions[0]
        pct = c.read(1)
    proba = model.estimator.predict_proba(flat).max(axis=1).reshape(60, 80).astype(np.float32)
    assert (pct[:5, :5] == 255).all()
    valid = labels != NODATA_CLASS
    np.testing.assert_array_equal(pct[valid], np.rint(proba[valid] * 100.0))
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_saved_model_round_trip(tmp_path, synthetic_scene):
    path, data = synthetic_scene
    with RasterStack.open(path) as stack:
        model = _fit_tree(stack, tmp_path)
        saved = model.save(tmp_path / "m.skops")
        again = load_model(saved)
        blk = stack.read(stack.windows(80).__next__())
    a = model.predict_block(blk)[0]
    b = again.predict_block(blk)[0]
    np.testing.assert_array_equal(a, b)
    assert again.meta == model.meta


def test_open_for_model_lines_bands_up(tmp_path, synthetic_scene):
    import pytest
    from conftest import write_raster

    from pipeline.core.errors import InputError
    from pipeline.mapping.classify import open_for_model

    path, data = synthetic_scene  # bands named b1, b2, b3
    with open_for_model(path, ["b3", "b1"]) as s:  # a superset: selected by name, in the model's order
        assert s.band_names == ["b3", "b1"]
        np.testing.assert_array_equal(s.read(next(s.windows(80)))[0, 10], data[2, 10])
    plain = write_raster(tmp_path / "plain.tif", data)  # no band names of its own
    with open_for_model(plain, ["red", "green", "blue"]) as s:
        assert s.band_names == ["red", "green", "blue"]
    with pytest.raises(InputError, match="has 3 bands, the model needs 4"):
        open_for_model(plain, ["a", "b", "c", "d"])
    with pytest.raises(InputError, match="do not match the model's"):
        open_for_model(path, ["red", "green", "blue"])
    with open_for_model(path, ["red", "green", "blue"], band_names=["red", "green", "blue"]) as s:
        assert s.band_names == ["red", "green", "blue"]


def _aux_band(path):
    import xml.etree.ElementTree as ET

    return ET.parse(f"{path}.aux.xml").getroot().find("PAMRasterBand")


def test_class_map_carries_its_class_table(tmp_path, synthetic_scene):
    """Names and colours travel with the map: tag, RAT + category names + RGBA table (PAM), QML, CLR."""
    import json
    import xml.etree.ElementTree as ET

    from PIL import Image

    from pipeline.evaluation.reference_sample import map_class_names
    from pipeline.inputs.class_table import read_pam_names

    path, _ = synthetic_scene
    with RasterStack.open(str(path)) as stack:
        model = _fit_tree(stack, tmp_path)
        classify_raster(model, stack, str(tmp_path / "m.tif"), str(tmp_path / "m_conf.tif"), progress=False)
    out = tmp_path / "m.tif"
    with rasterio.open(out) as m:
        assert (
            json.loads(m.tags()["class_names"]) == json.loads(m.tags(1)["class_names"]) == {"1": "left", "2": "right"}
        )
        cmap = m.colormap(1)
        assert cmap[1] == (255, 0, 0, 255) and cmap[2] == (0, 0, 255, 255)
        assert all(cmap[v][3] == 0 for v in (0, 3, 100, NODATA_CLASS))  # unused entries transparent, not black
        assert m.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    band = _aux_band(out)
    rat = band.find("GDALRasterAttributeTable")
    cols = [fd.findtext("Name") for fd in rat.findall("FieldDefn")]
    rows = [[f.text for f in r.findall("F")] for r in rat.findall("Row")]
    assert cols == ["Value", "Class", "Red", "Green", "Blue", "Alpha"]
    assert rows == [["1", "left", "255", "0", "0", "255"], ["2", "right", "0", "0", "255", "255"]]
    assert [c.text or "" for c in band.find("CategoryNames")] == ["", "left", "right"]
    qml = ET.parse(tmp_path / "m.qml").getroot()
    assert qml.find("pipe/rasterrenderer").get("type") == "paletted"
    assert [(e.get("value"), e.get("label"), e.get("color")) for e in qml.iter("paletteEntry")] == [
        ("1", "left", "#ff0000"),
        ("2", "right", "#0000ff"),
    ]
    assert (tmp_path / "m.clr").read_text().splitlines() == ["1 255 0 0", "2 0 0 255"]
    assert read_pam_names(out) == map_class_names(out) == {1: "left", 2: "right"}
    from pipeline.evaluation.reference_sample import design_sample  # assess-design names the strata from the map itself

    assert set(design_sample(out, 20, "equal", seed=0)["map_class_name"]) == {"left", "right"}
    # the confidence raster is not a class map: its QGIS style is a colour ramp over 0-100 %, not a palette
    ren = ET.parse(tmp_path / "m_conf.qml").getroot().find("pipe/rasterrenderer")
    assert (ren.get("type"), ren.get("classificationMin"), ren.get("classificationMax")) == (
        "singlebandpseudocolor",
        "0",
        "100",
    )
    assert not (tmp_path / "m_conf.clr").exists() and not (tmp_path / "m_conf.tif.aux.xml").exists()
    for legend in ("m_legend.png", "m_conf_legend.png"):  # a legend image beside each
        with Image.open(tmp_path / legend) as im:
            assert im.format == "PNG" and im.width > 50 and im.height > 50


@pytest.mark.skipif(shutil.which("gdalinfo") is None, reason="gdalinfo (gdal-bin) not installed")
def test_gdal_sees_class_names_and_transparent_palette(tmp_path, synthetic_scene):
    """What a GIS user's GDAL shows: the RAT, category names and an RGBA palette."""
    import json
    import subprocess

    path, _ = synthetic_scene
    with RasterStack.open(path) as stack:
        classify_raster(_fit_tree(stack, tmp_path), stack, tmp_path / "m.tif", progress=False)
    info = json.loads(
        subprocess.run(
            ["gdalinfo", "-json", str(tmp_path / "m.tif")], capture_output=True, text=True, check=True
        ).stdout
    )
    band = info["bands"][0]
    assert band["colorInterpretation"] == "Palette"
    assert band["categories"] == ["", "left", "right"]
    assert [r["f"] for r in info["rat"]["row"]] == [[1, "left", 255, 0, 0, 255], [2, "right", 0, 0, 255, 255]]
    entries = band["colorTable"]["entries"]
    assert entries[1] == [255, 0, 0, 255] and entries[0][3] == 0 and entries[255][3] == 0
    assert json.loads(band["metadata"][""]["class_names"]) == {"1": "left", "2": "right"}


def test_gdal_cache_is_sized_from_the_window_and_restored(tmp_path):
    """While mapping, GDAL's block cache holds one window's tiles (all bands) plus the writers'
    slack, whatever the raster size; the previous cache size is back afterwards."""
    from rasterio.env import get_gdal_config
    from rasterio.transform import from_origin

    from pipeline.mapping.classify import CACHE_SLACK_BYTES

    rng = np.random.default_rng(1)
    data = rng.integers(1, 1000, size=(3, 200, 200)).astype(np.uint16)
    path = tmp_path / "tiled.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=200,
        height=200,
        count=3,
        dtype="uint16",
        crs="EPSG:32633",
        transform=from_origin(0, 2000, 10, 10),
        tiled=True,
        blockxsize=32,
        blockysize=32,
    ) as dst:
        dst.write(data)
    seen = []

    class Recorder(DecisionTreeModel):
        def predict_block(self, block):
            seen.append(get_gdal_config("GDAL_CACHEMAX"))
            return super().predict_block(block)

    before = get_gdal_config("GDAL_CACHEMAX")
    with RasterStack.open(path) as stack:
        model = _fit_tree(stack, tmp_path)
        model.__class__ = Recorder
        classify_raster(model, stack, tmp_path / "m.tif", window_size=64, workers=1, progress=False)
    # a 64-px window touches at most 3 x 3 tiles of 32 x 32 px (it need not align), 3 bands x 2 bytes
    assert set(seen) == {3 * 3 * 32 * 32 * 3 * 2 + CACHE_SLACK_BYTES}
    assert get_gdal_config("GDAL_CACHEMAX") == before


def test_many_bands_map_in_bounded_windows_same_map(tmp_path):
    """A raster of many bands is mapped in windows that each stay within the window budget
    (whatever window size the caller asked for), and the map is the per-pixel prediction; the
    `landcover map` CLI gives the same map."""
    from rasterio.transform import from_origin

    from pipeline.cli.main import main
    from pipeline.sampling.patches import WINDOW_BYTES

    bands, side = 600, 150
    rng = np.random.default_rng(3)
    data = rng.integers(1, 1000, size=(bands, side, side)).astype(np.uint16)
    data[0, :, 75:] += 2000  # band 1 separates left and right
    path = tmp_path / "hyper.tif"
    profile = dict(driver="GTiff", width=side, height=side, count=bands, dtype="uint16", crs="EPSG:32633")
    with rasterio.open(path, "w", transform=from_origin(0, 1500, 10, 10), **profile) as dst:
        dst.write(data)
    blocks = []

    class Recorder(DecisionTreeModel):
        def predict_block(self, block):
            blocks.append(block.shape)
            return super().predict_block(block)

    with RasterStack.open(path) as stack:
        model = _fit_tree(stack, tmp_path)
        model.save(tmp_path / "tree.skops")
        model.__class__ = Recorder
        res = classify_raster(model, stack, tmp_path / "lib.tif", window_size=512, workers=1, progress=False)
    assert len(blocks) > 1 and all(b[0] == bands for b in blocks)
    assert max(b[0] * b[1] * b[2] * 4 for b in blocks) <= WINDOW_BYTES
    assert res["window_size"] < side
    expect = model.estimator.predict(data.reshape(bands, -1).T.astype(np.float32)).reshape(side, side)
    assert (
        main(
            ["map", "--model", str(tmp_path / "tree.skops"), "--raster", str(path), "--out", str(tmp_path / "cli.tif")]
        )
        == 0
    )
    with rasterio.open(tmp_path / "lib.tif") as a, rasterio.open(tmp_path / "cli.tif") as b:
        np.testing.assert_array_equal(a.read(1), expect)
        np.testing.assert_array_equal(b.read(1), expect)

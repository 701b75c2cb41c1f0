import numpy as np
import pandas as pd
import rasterio

from pipeline.config import NODATA_CLASS, DecisionTreeConfig
from pipeline.mapping import classify_raster
from pipeline.models import load_model
from pipeline.models.base import ModelMeta, TrainingData
from pipeline.models.classical import DecisionTreeModel
from pipeline.patches import extract_patches, open_patches
from pipeline.raster import RasterStack


def _fit_tree(stack, tmp_path):
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(5, 60, 300), rng.integers(5, 80, 300)
    y = np.where(cols < 40, 1, 2)
    store = open_patches(extract_patches(stack, pd.DataFrame({"row": rows, "col": cols}), 1, tmp_path / "p.npy",
                                         progress=False))
    meta = ModelMeta("decision_tree", stack.band_names, [1, 2], ["left", "right"], ["#ff0000", "#0000ff"], 1)
    td = TrainingData(store, y, np.arange(300), np.zeros((300, 2)), stack.band_names)
    return DecisionTreeModel(DecisionTreeConfig(), meta, seed=0).fit(td)


def test_map_grid_colormap_nodata_and_window_invariance(tmp_path, synthetic_scene):
    path, data = synthetic_scene
    with RasterStack.open(path) as stack:
        model = _fit_tree(stack, tmp_path)
        a = classify_raster(model, stack, tmp_path / "a.tif", tmp_path / "a_conf.tif", window_size=16, workers=2,
                            progress=False)
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
    with rasterio.open(tmp_path / "a_conf.tif") as c:
        conf = c.read(1)
        assert np.isnan(conf[:5, :5]).all() and (conf[5:, 5:] > 0.4).all() and (conf[5:, 5:] <= 1).all()
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_saved_model_round_trip(tmp_path, synthetic_scene):
    path, data = synthetic_scene
    with RasterStack.open(path) as stack:
        model = _fit_tree(stack, tmp_path)
        saved = model.save(tmp_path / "m.pkl")
        again = load_model(saved)
        blk = stack.read(stack.windows(80).__next__())
    a = model.predict_block(blk)[0]
    b = again.predict_block(blk)[0]
    np.testing.assert_array_equal(a, b)
    assert again.meta == model.meta


def test_open_for_model_lines_bands_up(tmp_path, synthetic_scene):
    import pytest

    from conftest import write_raster
    from pipeline.errors import InputError
    from pipeline.mapping import open_for_model

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

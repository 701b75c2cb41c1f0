"""Gradient boosting (LightGBM): early stopping on the validation groups, a saved file that runs no
code on load, and maps whose labels equal LightGBM's own predict at every pixel."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest
import rasterio
from numpy.lib.stride_tricks import sliding_window_view
from rasterio.transform import from_origin

from pipeline import classify_raster
from pipeline.models import build_model, load_model
from pipeline.models.base import ModelMeta, TrainingData
from pipeline.models.boosting import ROUNDS_WITHOUT_VALIDATION
from pipeline.models.settings import GradientBoostingConfig

BANDS = ["blue", "green", "red", "nir"]
K = 5
MEANS = np.array([[500, 800, 600, 3000], [900, 1200, 1400, 1800], [300, 500, 400, 200], [700, 900, 800, 2200]])


def _meta(ids: list[int]) -> ModelMeta:
    return ModelMeta("gradient_boosting", BANDS, ids, [f"c{i}" for i in ids], ["#000000"] * len(ids), K)


def _data(rng, n: int, classes: list[int], n_groups: int = 20) -> TrainingData:
    """Overlapping classes (the trees must split finely), scattered nodata in the patches."""
    c = rng.integers(0, len(classes), n)
    p = (MEANS[c][:, :, None, None] + rng.normal(size=(n, 4, K, K)) * 350).astype(np.float32)
    p[rng.random(p.shape) < 0.02] = np.nan
    return TrainingData(p, np.asarray(classes)[c], rng.integers(0, n_groups, n), rng.normal(size=(n, 2)), BANDS)


def _library_labels(model, X: np.ndarray) -> np.ndarray:
    """LightGBM's own prediction, from the text model alone: argmax of ``Booster.predict`` (what
    ``LGBMClassifier.predict`` returns), mapped to the model's class ids."""
    proba = lgb.Booster(model_str=model.booster_text_).predict(X)
    proba = np.column_stack([1 - proba, proba]) if proba.ndim == 1 else proba
    return np.asarray(model.classes_)[np.argmax(proba, axis=1)]


@pytest.mark.parametrize("classes", [[1, 4, 7, 9], [2, 5]])
def test_map_labels_equal_lightgbm_predict_at_every_pixel(classes, tmp_path):
    rng = np.random.default_rng(len(classes))
    model = build_model("gradient_boosting", GradientBoostingConfig(), _meta(classes), seed=1)
    model.fit(_data(rng, 1500, classes), _data(rng, 400, classes))
    assert model.fit_info["stopping"].startswith("validation split")
    assert 1 <= model.fit_info["rounds_kept"] < 1000 and model.halo == K // 2

    # a real GeoTIFF with nodata, mapped window by window as `landcover map` does
    H, W = 70, 90
    cls = rng.integers(0, len(classes), size=(H // 10 + 1, W // 10 + 1)).repeat(10, 0).repeat(10, 1)[:H, :W]
    img = (MEANS[cls].transpose(2, 0, 1) + rng.normal(size=(4, H, W)) * 350).clip(1, 65535).astype(np.uint16)
    img[:, :6, :9] = 0
    profile = dict(driver="GTiff", width=W, height=H, count=4, dtype="uint16", nodata=0, crs="EPSG:32633")
    with rasterio.open(tmp_path / "scene.tif", "w", transform=from_origin(0, 0, 10, 10), **profile) as dst:
        dst.write(img)
    classify_raster(
        model,
        tmp_path / "scene.tif",
        tmp_path / "map.tif",
        tmp_path / "conf.tif",
        window_size=32,
        workers=2,
        progress=False,
    )
    with rasterio.open(tmp_path / "map.tif") as src:
        mapped = src.read(1, masked=True)

    # every pixel's features from its own k x k patch (NaN outside the raster and on nodata)
    f = img.astype(np.float32)
    f[:, (img == 0).all(axis=0)] = np.nan
    padded = np.pad(f, ((0, 0), (K // 2, K // 2), (K // 2, K // 2)), constant_values=np.nan)
    patches = sliding_window_view(padded, (K, K), axis=(1, 2)).transpose(1, 2, 0, 3, 4).reshape(-1, 4, K, K)
    X = model.features_from_patches(np.ascontiguousarray(patches))
    want = _library_labels(model, X).reshape(H, W)
    valid = ~mapped.mask
    assert valid.sum() == H * W - 6 * 9
    np.testing.assert_array_equal(mapped.data[valid], want[valid])
    assert len(np.unique(want[valid])) == len(classes)


def test_compiled_labels_and_confidence_equal_lightgbm_on_many_pixels():
    rng = np.random.default_rng(5)
    classes = [1, 4, 7, 9]
    model = build_model("gradient_boosting", GradientBoostingConfig(num_leaves=63), _meta(classes), seed=0)
    model.fit(_data(rng, 2000, classes), _data(rng, 500, classes))
    X = model.features_from_patches(_data(rng, 20000, classes).patches)
    labels, conf = model._predict_features(X)
    proba = lgb.Booster(model_str=model.booster_text_).predict(X)
    np.testing.assert_array_equal(labels, np.asarray(classes)[np.argmax(proba, axis=1)])
    np.testing.assert_allclose(conf, proba.max(axis=1), rtol=1e-6)


@pytest.mark.parametrize("classes, leaves", [([1, 4, 7, 9], 31), ([2, 5], 32)])
def test_bitvector_kernel_equals_the_tree_walk_and_lightgbm(classes, leaves):
    """Trees of at most 32 leaves (the default 31) map through the bit-vector kernel: its labels and
    confidence equal the tree walk's exactly and LightGBM's predict (labels exactly)."""
    from pipeline.models.boosting import parse_trees
    from pipeline.models.tree_infer import BitvectorTrees, PackedTrees

    rng = np.random.default_rng(leaves)
    model = build_model("gradient_boosting", GradientBoostingConfig(num_leaves=leaves), _meta(classes), seed=0)
    model.fit(_data(rng, 3000, classes), _data(rng, 600, classes))
    assert isinstance(model._compiled(), BitvectorTrees)
    trees, tree_class, n_scores = parse_trees(model.booster_text_, model.spec.n_features)
    assert max(int((t.children_left < 0).sum()) for t in trees) == leaves  # some tree uses every bit
    X = model.features_from_patches(_data(rng, 20000, classes).patches)
    labels, conf = model._predict_features(X)
    planes = model._predict_features(np.ascontiguousarray(X.T), columns=True)
    walk = PackedTrees(trees).boost_argmax(X, tree_class, n_scores)
    np.testing.assert_array_equal(labels, np.asarray(model.classes_)[walk[0]])
    np.testing.assert_array_equal(conf, walk[1].astype(np.float32))
    np.testing.assert_array_equal(planes[0], labels)
    np.testing.assert_array_equal(planes[1], conf)
    np.testing.assert_array_equal(labels, _library_labels(model, X))
    np.testing.assert_array_equal(model.predict_library(X)[0], labels)


def test_saved_model_is_text_and_maps_the_same(tmp_path):
    import skops.io as sio

    rng = np.random.default_rng(2)
    model = build_model("gradient_boosting", GradientBoostingConfig(), _meta([1, 4, 7]), seed=0)
    model.fit(_data(rng, 800, [1, 4, 7]), _data(rng, 200, [1, 4, 7]))
    path = model.save(tmp_path / "gb.skops")
    assert sio.get_untrusted_types(file=path) == []  # no object beyond skops' defaults: the booster is text
    loaded = load_model(path)
    test = _data(rng, 3000, [1, 4, 7])
    a, b = model.predict_patches(test.patches), loaded.predict_patches(test.patches)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert loaded.fit_info["rounds_kept"] == model.fit_info["rounds_kept"]
    np.testing.assert_allclose(loaded.predict_proba_patches(test.patches).sum(axis=1), 1.0)


def test_early_stopping_without_a_validation_split():
    rng = np.random.default_rng(3)
    train = _data(rng, 1200, [1, 4, 7], n_groups=20)
    held = build_model("gradient_boosting", GradientBoostingConfig(), _meta([1, 4, 7]), seed=0).fit(train, None)
    assert held.fit_info["stopping"].startswith("held-out fifth of the training groups")
    assert held.fit_info["rounds_kept"] < 1000
    few = TrainingData(train.patches, train.y, train.groups % 3, train.xy, BANDS)  # 3 groups: nothing to hold out
    m = build_model("gradient_boosting", GradientBoostingConfig(), _meta([1, 4, 7]), seed=0).fit(few, None)
    assert m.fit_info["stopping"].startswith("none") and m.fit_info["rounds_kept"] == ROUNDS_WITHOUT_VALIDATION
    # a validation split with one class cannot stop the boosting either: held-out groups instead
    one = _data(rng, 100, [4])
    m2 = build_model("gradient_boosting", GradientBoostingConfig(), _meta([1, 4, 7]), seed=0).fit(train, one)
    assert m2.fit_info["stopping"].startswith("held-out")

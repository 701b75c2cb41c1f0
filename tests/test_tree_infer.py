"""Compiled tree inference (pipeline.models.tree_infer) against scikit-learn itself.

Labels must be those of ``predict`` / ``apply`` row for row, and the forest's confidence
``predict_proba``'s row maximum to 1e-12, on random data, forests of several depths and leaf
sizes, rows on and around the split thresholds, NaN rows, and in a map with nodata pixels
and a class the model never saw.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

from pipeline.inputs.class_table import NODATA_CLASS
from pipeline.mapping.classify import classify_raster
from pipeline.models import build_model, load_model
from pipeline.models.base import ModelMeta, TrainingData
from pipeline.models.settings import DecisionTreeConfig, RandomForestConfig
from pipeline.models.tree_infer import PackedTrees, float32_floor


def _data(rng, n: int, f: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.normal(0, 1, (k, f))
    y = rng.integers(0, k, n)
    X = (centres[y] + rng.normal(0, 1.3, (n, f))).astype(np.float32)
    return X, y


def _hard_rows(est, X: np.ndarray, rng) -> np.ndarray:
    """Rows whose features sit exactly on, just below and just above split thresholds (as
    float32), besides ordinary rows: where a float32 threshold could disagree with float64."""
    trees = [e.tree_ for e in getattr(est, "estimators_", [est])]
    rows = [X]
    for t in trees[:5]:
        inner = np.flatnonzero(t.children_left >= 0)[:300]
        for shift in (None, -np.inf, np.inf):
            R = X[rng.integers(0, len(X), len(inner))].copy()
            v = t.threshold[inner].astype(np.float32)
            if shift is not None:
                v = np.nextafter(v, np.float32(shift))
            R[np.arange(len(inner)), t.feature[inner]] = v
            rows.append(R)
    return np.concatenate(rows)


def test_float32_floor_is_exact():
    rng = np.random.default_rng(0)
    t = np.concatenate([rng.normal(0, 1e3, 5000), [0.0, -0.0, 1e300, -1e300, 3.4e38, 1.5]])
    f = float32_floor(t)
    assert f.dtype == np.float32
    assert np.all(f.astype(np.float64) <= t)
    with np.errstate(over="ignore"):
        above = np.nextafter(f, np.float32(np.inf)).astype(np.float64)
    assert np.all(above > t)  # the largest float32 not above t
    x = rng.normal(0, 1e3, 20000).astype(np.float32)
    for i in range(0, len(t), 97):
        np.testing.assert_array_equal(x.astype(np.float64) <= t[i], x <= f[i])


@pytest.mark.parametrize(
    "k, max_depth, min_samples_leaf, n_trees",
    [(2, None, 1, 7), (3, 3, 1, 20), (5, 8, 4, 15), (6, None, 1, 25), (7, None, 3, 10)],
)
def test_forest_matches_predict_proba(k, max_depth, min_samples_leaf, n_trees):
    rng = np.random.default_rng(k * 10 + n_trees)
    X, y = _data(rng, 3000, 5, k)
    rf = RandomForestClassifier(
        n_trees, max_depth=max_depth, min_samples_leaf=min_samples_leaf, n_jobs=1, random_state=k
    ).fit(X, y)
    Xt = _hard_rows(rf, _data(rng, 5000, 5, k)[0], rng)
    proba = rf.predict_proba(Xt)
    packed = PackedTrees.from_estimator(rf)
    assert packed.pure == (min_samples_leaf == 1 and max_depth is None)  # fully grown: votes
    for threads in (1, 2):
        idx, conf = packed.proba_argmax(Xt, n_threads=threads)
        np.testing.assert_array_equal(rf.classes_[idx], rf.predict(Xt))
        np.testing.assert_allclose(conf, proba.max(axis=1), rtol=0, atol=1e-12)
    if k == 6:  # fully grown trees vote: ties happen, and the first maximum wins, as argmax
        assert (np.sort(proba, axis=1)[:, -1] == np.sort(proba, axis=1)[:, -2]).any()


@pytest.mark.parametrize("max_depth", [None, 1, 6])
def test_tree_leaves_match_apply(max_depth):
    rng = np.random.default_rng(5)
    X, y = _data(rng, 4000, 7, 4)
    dt = DecisionTreeClassifier(max_depth=max_depth, random_state=0).fit(X, y)
    Xt = _hard_rows(dt, _data(rng, 6000, 7, 4)[0], rng)
    packed = PackedTrees.from_estimator(dt)
    np.testing.assert_array_equal(packed.leaves(Xt), dt.apply(Xt))
    np.testing.assert_array_equal(packed.leaves(Xt, n_threads=2), dt.apply(Xt))
    one = DecisionTreeClassifier().fit(X[:5], np.zeros(5, int))  # a lone root (one class)
    np.testing.assert_array_equal(PackedTrees.from_estimator(one).leaves(Xt), np.zeros(len(Xt), int))


def test_wrong_feature_count_is_refused():
    rng = np.random.default_rng(0)
    X, y = _data(rng, 200, 3, 2)
    packed = PackedTrees.from_estimator(DecisionTreeClassifier().fit(X, y))
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        packed.leaves(X[:, :2])


BANDS = ["b1", "b2", "b3", "b4"]
CLASS_IDS = [3, 5, 8, 9]  # 9 has no training pixels: the model drops it


def _meta(name: str) -> ModelMeta:
    return ModelMeta(
        model=name,
        band_names=BANDS,
        class_ids=CLASS_IDS,
        class_names=["a", "b", "c", "never"],
        class_colors=["#ff0000", "#00ff00", "#0000ff", "#999999"],
        patch_size=1,
    )


def _training(rng, n: int) -> TrainingData:
    X, y = _data(rng, n, 4, 3)
    X = X * 400 + 1500
    ids = np.asarray(CLASS_IDS[:3])[y]
    return TrainingData(X[:, :, None, None], ids, rng.integers(0, 10, n), rng.normal(size=(n, 2)), BANDS)


@pytest.mark.parametrize("name", ["random_forest", "decision_tree"])
def test_models_match_sklearn_in_a_map_with_nodata(name, tmp_path):
    """Mapping a raster with nodata pixels: every valid pixel has sklearn's label (and for the
    forest predict_proba's maximum as confidence), nodata pixels are NODATA_CLASS, and a
    saved and reloaded model maps the same."""
    rng = np.random.default_rng(11)
    settings = RandomForestConfig(n_estimators=12, n_jobs=2) if name == "random_forest" else DecisionTreeConfig()
    model = build_model(name, settings, _meta(name), seed=2).fit(_training(rng, 1500))
    H, W = 70, 90
    X, _ = _data(rng, H * W, 4, 3)
    img = np.clip(X * 400 + 1500, 1, 65535).astype(np.uint16).T.reshape(4, H, W)
    img[:, :6, :] = 0  # nodata rows
    img[2, 30:35, 40:50] = 0  # nodata in one band only
    path = tmp_path / "scene.tif"
    profile = dict(driver="GTiff", width=W, height=H, count=4, dtype="uint16", nodata=0, crs="EPSG:32633")
    with rasterio.open(path, "w", transform=from_origin(500000, 4000000, 10, 10), **profile) as dst:
        dst.write(img)
        dst.descriptions = tuple(BANDS)
    out, conf_path = tmp_path / "map.tif", tmp_path / "conf.tif"
    classify_raster(model, path, out, confidence_path=conf_path, window_size=32, progress=False)
    with rasterio.open(out) as src, rasterio.open(conf_path) as csrc:
        got, conf = src.read(1), csrc.read(1)
    valid = (img != 0).all(axis=0)
    X = img.reshape(4, -1).T.astype(np.float32)[valid.ravel()]
    assert (got[~valid] == NODATA_CLASS).all()
    np.testing.assert_array_equal(got[valid], model.estimator.predict(X))
    assert 9 not in set(got[valid].tolist())
    if name == "random_forest":
        # written as uint8 whole percent (pipeline.mapping.legends): the forest's vote share, rounded
        share = model.estimator.predict_proba(X).max(axis=1).astype(np.float32)
        assert np.abs(conf[valid].astype(int) - np.rint(share * 100)).max() <= 1 and (conf[~valid] == 255).all()
    model.save(tmp_path / "m.skops")
    again = load_model(tmp_path / "m.skops")
    l1, c1 = model.predict_block(img.astype(np.float32))
    l2, c2 = again.predict_block(img.astype(np.float32))
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_array_equal(c1, c2)


def test_nan_rows_go_to_sklearn():
    rng = np.random.default_rng(4)
    model = build_model("random_forest", RandomForestConfig(n_estimators=9, n_jobs=1), _meta("random_forest"), seed=0)
    model.fit(_training(rng, 800))
    X = model.features_from_patches(_training(rng, 300).patches)
    X[::7, 1] = np.nan
    labels, conf = model._predict_features(X)
    np.testing.assert_array_equal(labels, model.estimator.predict(X))
    np.testing.assert_allclose(conf, model.estimator.predict_proba(X).max(axis=1).astype(np.float32))
    dt = build_model("decision_tree", DecisionTreeConfig(), _meta("decision_tree"), seed=0)
    dt.fit(_training(rng, 800))
    np.testing.assert_array_equal(dt._predict_features(X)[0], dt.estimator.predict(X))


def test_warm_up_loads_every_kernel():
    from pipeline.models import tree_infer

    tree_infer.warm_up()
    assert set(tree_infer._kernels) == {
        "boost_argmax",
        "boost_bitvector",
        "forest_argmax",
        "forest_votes",
        "tree_leaves",
        "tree_lookup",
        "tree_lookup_columns",
    }


def test_tree_block_read_in_place_equals_features_path():
    """The decision tree reads a window's band planes in place: the same labels and confidence as
    going through the (pixels, features) array, NaN and +-inf pixels included (both read them as
    the features' fill value)."""
    rng = np.random.default_rng(8)
    dt = build_model("decision_tree", DecisionTreeConfig(), _meta("decision_tree"), seed=0)
    dt.fit(_training(rng, 900))
    X, _ = _data(rng, 40 * 50, 4, 3)
    block = np.ascontiguousarray((X * 400 + 1500).T.reshape(4, 40, 50))
    block[:, :3] = np.nan
    block[1, 10, :20] = np.inf
    block[2, 11, :20] = -np.inf
    block[0, 12, :20] = 0.0
    labels, conf = dt.predict_block(block)
    ref_labels, ref_conf = dt._predict_features(dt.features_from_block(block))
    np.testing.assert_array_equal(labels.ravel(), ref_labels)
    np.testing.assert_array_equal(conf.ravel(), ref_conf)
    np.testing.assert_array_equal(labels.ravel(), dt.estimator.predict(dt.features_from_block(block)))

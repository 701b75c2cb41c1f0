"""Classical baselines: fit/predict on known answers, save/load, block == patches, SVM cap and tuning."""

from __future__ import annotations

import json

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.core.errors import InputError
from pipeline.models import build_model, load_model
from pipeline.models.base import ModelMeta, TrainingData
from pipeline.models.settings import (
    DecisionTreeConfig,
    GradientBoostingConfig,
    MaxLikelihoodConfig,
    RandomForestConfig,
    SVMConfig,
)
from pipeline.models.svm import stratified_cap
from pipeline.sampling.settings import FeatureConfig

BANDS = ["blue", "green", "red", "nir"]
CLASS_IDS = [1, 4, 7]
K = 5


def _meta(name: str) -> ModelMeta:
    return ModelMeta(
        model=name,
        band_names=BANDS,
        class_ids=CLASS_IDS,
        class_names=["a", "b", "c"],
        class_colors=["#ff0000", "#00ff00", "#0000ff"],
        patch_size=K,
    )


def _settings(name: str, features: FeatureConfig, **kw):
    cls = {
        "decision_tree": DecisionTreeConfig,
        "random_forest": RandomForestConfig,
        "gradient_boosting": GradientBoostingConfig,
        "svm": SVMConfig,
        "max_likelihood": MaxLikelihoodConfig,
    }[name]
    if name == "random_forest":
        kw.setdefault("n_estimators", 30)
    return cls(features=features, **kw)


CENTRES = np.array([[500, 800, 600, 3000], [900, 1200, 1400, 1800], [300, 500, 400, 200]], np.float32)


def _training(rng, n_per_class: int, n_groups: int = 12) -> TrainingData:
    y = np.repeat(CLASS_IDS, n_per_class)
    c = np.repeat(np.arange(3), n_per_class)
    patches = (CENTRES[c][:, :, None, None] + rng.normal(size=(len(y), 4, K, K)) * 60).astype(np.float32)
    patches[rng.random(patches.shape) < 0.02] = np.nan  # scattered nodata around the centres
    groups = rng.integers(0, n_groups, len(y))
    return TrainingData(patches, y.astype(np.int64), groups.astype(np.int64), rng.normal(size=(len(y), 2)), BANDS)


MODELS = ["decision_tree", "random_forest", "gradient_boosting", "svm", "max_likelihood"]
FEATS = {
    "plain": FeatureConfig(indices=[], patch_stats=False),  # the centre pixel's bands (version 0.1's default)
    "default": FeatureConfig(),  # auto indices (ndvi, ndwi from these band names) and window statistics
    "full": FeatureConfig(indices=["ndvi", "ndwi"], patch_stats=True),
}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return _training(rng, 150), _training(rng, 60), _training(rng, 100)


@pytest.mark.parametrize("feat", list(FEATS))
@pytest.mark.parametrize("name", MODELS)
def test_fit_predict_save_load_block(name, feat, data, tmp_path):
    train, val, test = data
    kw = {"C": [1.0, 10.0]} if name == "svm" else {}
    model = build_model(name, _settings(name, FEATS[feat], **kw), _meta(name), seed=3)
    assert model.halo == (0 if feat == "plain" else K // 2)
    model.fit(train, val)
    labels, conf = model.predict_patches(test.patches)
    assert labels.dtype == np.int64 and conf.dtype == np.float32 and set(labels) <= set(CLASS_IDS)
    assert np.mean(labels == test.y) > 0.95
    assert np.all((conf > 0) & (conf <= 1))
    info = model.fit_info
    json.dumps(info)
    assert info["n_train"] == len(train) and info["n_features"] == (4 if feat == "plain" else 14)
    assert info["inputs"]["context_stats"] == ([] if feat == "plain" else ["mean", "std"])
    assert isinstance(info["hyperparameters"], dict) and info["fit_seconds"] >= 0

    # save / load round trip
    path = model.save(tmp_path / f"{name}.skops")
    loaded = load_model(path)
    l2, c2 = loaded.predict_patches(test.patches)
    np.testing.assert_array_equal(l2, labels)
    np.testing.assert_array_equal(c2, conf)

    # predict_block equals predict_patches at every pixel, NaN neighbours included
    rng = np.random.default_rng(1)
    h = model.halo
    H, W = 14, 17
    cls_map = rng.integers(0, 3, size=(H + 2 * h, W + 2 * h))
    block = (CENTRES[cls_map].transpose(2, 0, 1) + rng.normal(size=(4, H + 2 * h, W + 2 * h)) * 60).astype(np.float32)
    block[:, rng.random(block.shape[1:]) < 0.1] = np.nan
    block[1, 2:5, 3:9] = np.nan
    bl, bc = model.predict_block(block)
    assert bl.shape == (H, W) and bc.shape == (H, W)
    pad = K // 2 - h
    padded = np.pad(block, ((0, 0), (pad, pad), (pad, pad)), constant_values=np.nan)
    patches = sliding_window_view(padded, (K, K), axis=(1, 2)).transpose(1, 2, 0, 3, 4).reshape(-1, 4, K, K)
    pl, pc = model.predict_patches(np.ascontiguousarray(patches))
    np.testing.assert_array_equal(bl.ravel(), pl)
    np.testing.assert_allclose(bc.ravel(), pc, rtol=1e-4, atol=1e-5)


def test_svm_cap_and_selection(data):
    train, val, _ = data
    s = SVMConfig(C=[0.1, 10.0], gamma=["scale", 0.5], max_train_samples=100)
    model = build_model("svm", s, _meta("svm"), seed=0).fit(train, val)
    fi = model.fit_info
    assert fi["train_cap_applied"] is True and fi["n_train_original"] == 450 and fi["n_train_used"] == 100
    assert fi["selection"] == "validation" and len(fi["selection_scores"]) == 4
    assert fi["C"] in (0.1, 10.0) and fi["n_support_vectors"] <= 100
    # no usable validation split -> grouped 3-fold CV on the training groups
    one_class_val = val.subset(np.flatnonzero(val.y == CLASS_IDS[0]))
    m2 = build_model("svm", s, _meta("svm"), seed=0).fit(train, one_class_val)
    assert m2.fit_info["selection"] == "group_kfold_3"
    # under the cap: nothing applied
    m3 = build_model("svm", SVMConfig(C=[1.0]), _meta("svm"), seed=0).fit(train, None)
    assert m3.fit_info["train_cap_applied"] is False and m3.fit_info["selection"] == "none"


def test_svm_fast_path_matches_sklearn(data):
    train, _, test = data
    model = build_model("svm", SVMConfig(C=[10.0], features=FEATS["plain"]), _meta("svm"), seed=0).fit(train)
    X = model.features_from_patches(test.patches)
    X = np.concatenate([X, np.random.default_rng(5).uniform(0, 3000, size=(3000, 4)).astype(np.float32)])
    fast, _ = model._predict_features(X)
    assert np.mean(fast == model.predict_sklearn(X)) >= 0.9999


def test_stratified_cap():
    y = np.array([0] * 900 + [1] * 95 + [2] * 5)
    idx = stratified_cap(y, 100, seed=1)
    assert len(idx) == 100 and len(np.unique(idx)) == 100
    counts = np.bincount(y[idx])
    assert counts[0] == 90 and counts[1] in (9, 10) and counts[2] >= 1
    np.testing.assert_array_equal(idx, stratified_cap(y, 100, seed=1))
    assert not np.array_equal(idx, stratified_cap(y, 100, seed=2))


def test_missing_band_for_index_raises():
    meta = ModelMeta(
        model="svm",
        band_names=["b1", "b2", "b3"],
        class_ids=[1, 2],
        class_names=["a", "b"],
        class_colors=["#000000", "#ffffff"],
        patch_size=3,
    )
    with pytest.raises(InputError, match="nir"):
        build_model("svm", SVMConfig(features=FeatureConfig(indices=["ndvi"])), meta, seed=0)


def test_max_likelihood_priors(data):
    train, _, test = data
    # unbalanced training set: proportional priors follow the class frequencies, equal priors do not
    keep = np.concatenate(
        [
            np.flatnonzero(train.y == CLASS_IDS[0]),
            np.flatnonzero(train.y == CLASS_IDS[1])[:20],
            np.flatnonzero(train.y == CLASS_IDS[2])[:20],
        ]
    )
    sub = train.subset(keep)
    for priors in ("equal", "proportional"):
        m = build_model("max_likelihood", MaxLikelihoodConfig(priors=priors), _meta("max_likelihood"), seed=0).fit(sub)
        p = m.estimator.priors_
        assert np.allclose(p, 1 / 3) if priors == "equal" else p[0] > 0.7
        assert np.mean(m.predict_patches(test.patches)[0] == test.y) > 0.95


def test_decision_tree_confidence_from_leaf_or_ancestor_with_enough_samples():
    """Fully grown tree: labels are the tree's own; confidence is the class share of the deepest node on the
    pixel's path with >= confidence_min_samples training samples (found here by walking decision_path)."""
    rng = np.random.default_rng(1)

    def overlapping(n):  # classes whose spectra overlap, so the tree's small leaves are islands
        d = _training(rng, n)
        noisy = d.patches + rng.normal(size=d.patches.shape).astype(np.float32) * 1500
        return TrainingData(noisy, d.y, d.groups, d.xy, BANDS)

    train, test = overlapping(150), overlapping(50)
    m = build_model(
        "decision_tree",
        _settings("decision_tree", FEATS["plain"], confidence_min_samples=15),
        _meta("decision_tree"),
        seed=0,
    ).fit(train)
    labels, conf = m.predict_patches(test.patches)
    X = m.features_from_patches(test.patches)
    np.testing.assert_array_equal(labels, m.estimator.predict(X))
    tree = m.estimator.tree_
    path = m.estimator.decision_path(X)
    cls = list(m.estimator.classes_)
    for i in range(len(X)):
        nodes = path.indices[path.indptr[i] : path.indptr[i + 1]]
        deep = [n for n in nodes if tree.n_node_samples[n] >= 15]
        node = max(deep, key=lambda n: list(nodes).index(n))
        v = tree.value[node, 0]
        assert conf[i] == pytest.approx(v[cls.index(labels[i])] / v.sum(), rel=1e-6)
    assert len(np.unique(conf)) > 2 and conf.min() < 1  # not the constant 1 of pure leaves
    own = build_model(
        "decision_tree",
        _settings("decision_tree", FEATS["plain"], confidence_min_samples=1),
        _meta("decision_tree"),
        seed=0,
    ).fit(train)
    assert (own.predict_patches(test.patches)[1] == 1).all()  # its own pure leaves: degenerate

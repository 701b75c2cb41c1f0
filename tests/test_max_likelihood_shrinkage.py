"""Maximum likelihood with fewer training pixels than bands (issue #11 item 3): shrunk class
covariances that ``reg_param`` controls, and classes a model leaves out are shown."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.covariance import OAS

sys.path.insert(0, str(Path(__file__).parent))
from unseen_scenes import utm_scene

from pipeline.models import ModelMeta, TrainingData, build_model
from pipeline.models.gaussian import ShrunkGaussianClassifier
from pipeline.models.settings import MaxLikelihoodConfig


def _data(n_per_class=(8, 200, 200), d=30, seed=0):
    """Three Gaussian classes in ``d`` features; the first has fewer samples than features."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for k, n in enumerate(n_per_class):
        mean = np.zeros(d)
        mean[k::3] = 2.0
        X.append(rng.normal(mean, 1.0, size=(n, d)))
        y.append(np.full(n, k + 1))
    return np.vstack(X), np.concatenate(y)


def test_fixed_shrinkage_is_the_convex_combination_with_the_scaled_identity():
    X, y = _data()
    for a in (0.05, 0.5):
        m = ShrunkGaussianClassifier(shrinkage=a).fit(X, y)
        Xc = X[y == 1]
        S = np.cov(Xc, rowvar=False, bias=True)
        want = (1 - a) * S + a * np.trace(S) / S.shape[0] * np.eye(S.shape[0])
        np.testing.assert_allclose(m.covariance_[0], want, atol=2e-6)
    auto = ShrunkGaussianClassifier().fit(X, y)
    assert np.isclose(auto.shrinkage_[0], OAS().fit(X[y == 1]).shrinkage_)
    with pytest.raises(ValueError, match="8 training samples for 30 features"):
        ShrunkGaussianClassifier(shrinkage=0.0).fit(X, y)


def test_prediction_in_row_chunks_equals_one_pass_over_all_rows():
    """The log-likelihoods are computed in row chunks (bounded memory on many-band windows); the
    posteriors equal scipy's logpdf over all rows at once, computed here independently."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    from pipeline.models import gaussian

    X, y = _data(d=30)
    m = ShrunkGaussianClassifier(shrinkage=0.2).fit(X, y)
    step = gaussian.CHUNK_BYTES // (8 * 30)
    Xp = np.random.default_rng(1).normal(0.7, 1.5, size=(2 * step + 17, 30))  # three chunks, the last ragged
    jll = np.stack(
        [
            multivariate_normal(m.means_[k], m.covariance_[k]).logpdf(Xp) + np.log(m.priors_[k])
            for k in range(len(m.classes_))
        ],
        axis=1,
    )
    want = jll - logsumexp(jll, axis=1, keepdims=True)
    got = m.predict_log_proba(Xp)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(m.predict(Xp), m.classes_[np.argmax(want, axis=1)])
    assert m.predict_log_proba(Xp[:1]).shape == (1, 3)  # a single row (scipy returns a scalar for it)


def _meta(d):
    return ModelMeta(
        model="max_likelihood",
        band_names=[f"b{i}" for i in range(d)],
        class_ids=[1, 2, 3],
        class_names=["a", "b", "c"],
        class_colors=["#000000"] * 3,
        patch_size=1,
    )


def _td(X, y):
    return TrainingData(
        X[:, :, None, None].astype(np.float32),
        y,
        np.arange(len(y)),
        np.zeros((len(y), 2)),
        [f"b{i}" for i in range(X.shape[1])],
    )


def test_reg_param_changes_covariance_and_predictions():
    X, y = _data()
    Xt, yt = _data((100, 100, 100), seed=1)
    fits = {
        r: build_model("max_likelihood", MaxLikelihoodConfig(reg_param=r), _meta(30), seed=0).fit(_td(X, y))
        for r in ("auto", 1e-3, 0.3, 0.99)
    }
    covs = {r: m.estimator.covariance_[0] for r, m in fits.items()}
    preds = {r: m.predict_patches(_td(Xt, yt).patches) for r, m in fits.items()}
    assert not np.allclose(covs[1e-3], covs[0.3]) and not np.allclose(covs[0.3], covs[0.99])
    assert not np.allclose(preds[1e-3][1], preds[0.99][1])  # posteriors move with reg_param
    assert (preds[1e-3][0] != preds[0.99][0]).any()  # and so do some labels
    # the default works with 8 samples in 30 bands and recognises the rare class
    assert np.mean(preds["auto"][0] == yt) > 0.9
    assert np.mean(preds["auto"][0][yt == 1] == 1) > 0.8
    assert fits["auto"].fit_info["classes_with_fewer_samples_than_features"] == {"1": 8}


def test_class_with_one_sample_is_dropped_and_reported():
    X, y = _data((1, 50, 50), d=5)
    m = build_model("max_likelihood", MaxLikelihoodConfig(), _meta(5), seed=0).fit(_td(X, y))
    assert m.fit_info["dropped_classes"] == [1]
    from pipeline.runner.stages.fit import dropped_classes

    assert dropped_classes(m, m.meta) == {"a": "1 training sample (a covariance needs 2)"}


def test_cli_hyperspectral_scene_with_a_rare_class(tmp_path):
    """60 bands, a class of 4 small polygons: fewer training pixels than features, default settings."""
    from pipeline.cli.main import main

    cfg_path = utm_scene(
        tmp_path / "scene",
        n_bands=60,
        cap={"urban": 4},
        models={"max_likelihood": {}},
        split={"random_contrast": False},
    )
    assert (
        main(
            [
                "run",
                str(cfg_path),
                "--out",
                str(tmp_path / "runs"),
                "--run-id",
                "hyper",
                "--no-progress",
                "--engine",
                "local",
            ]
        )
        == 0
    )
    run = tmp_path / "runs" / "hyper"
    m = json.loads((run / "metrics.json").read_text())
    assert not m["failed_models"]
    ml = m["models"]["max_likelihood"]
    # fit_info is the mapped model's: the refit on every labelled sample (60 bands and their
    # window statistics as features); urban (id 3) has fewer pixels than that model has features
    info = ml["fit_info"]
    few = info["classes_with_fewer_samples_than_features"]
    samples = pd.read_parquet(run / "samples.parquet")
    assert info["n_features"] >= 60 and ml["mapped"]["train_samples"] == len(samples)
    assert few == {"3": int((samples["class_id"] == 3).sum())} and few["3"] < info["n_features"]
    assert ml["overall_accuracy"] > 0.9 and ml["per_class"]["urban"]["recall"] > 0.5


def test_report_shows_classes_a_model_left_out(tmp_path):
    from test_report import make_run_dir

    from pipeline.report.page import write_report

    run, metrics = make_run_dir(tmp_path, deep=False)
    metrics["models"]["svm"]["dropped_classes"] = {"urban": "1 training sample (a covariance needs 2)"}
    (run / "metrics.json").write_text(json.dumps(metrics))
    _, md = write_report(run)
    assert "svm left out class(es) urban (1 training sample (a covariance needs 2))" in md.read_text()

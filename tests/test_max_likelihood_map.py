"""Maximum likelihood maps by one whitened quadratic form per class and pixel: the map equals the
Gaussian log-likelihood computed here pixel by pixel with a linear solve and a log-determinant."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from numpy.lib.stride_tricks import sliding_window_view
from rasterio.transform import from_origin

from pipeline import classify_raster
from pipeline.models import build_model, load_model
from pipeline.models.base import ModelMeta, TrainingData
from pipeline.models.settings import MaxLikelihoodConfig

BANDS = ["blue", "green", "red", "nir", "swir1"]
K = 3
MEANS = np.array([[500, 800, 600, 3000, 1500], [900, 1200, 1400, 1800, 2200], [300, 500, 400, 200, 100]])


def _direct(model, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and winning posterior from the definition, one pixel at a time in float64:
    argmax_k log prior_k - 1/2 log det S_k - 1/2 (x - m_k)^T S_k^-1 (x - m_k)."""
    est = model.estimator
    Z = (X.astype(np.float64) - model.mean_) / model.scale_
    scores = np.empty((len(Z), len(est.classes_)))
    for k in range(len(est.classes_)):
        cov, mu = est.covariance_[k], est.means_[k]
        _, logdet = np.linalg.slogdet(cov)
        for i, z in enumerate(Z):
            d = z - mu
            scores[i, k] = np.log(est.priors_[k]) - 0.5 * logdet - 0.5 * d @ np.linalg.solve(cov, d)
    post = np.exp(scores - scores.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    return est.classes_[np.argmax(scores, axis=1)], post.max(axis=1)


@pytest.mark.parametrize("priors", ["equal", "proportional"])
def test_map_equals_the_per_pixel_quadratic_form(priors, tmp_path):
    rng = np.random.default_rng(11)
    n = 900
    c = rng.choice(3, n, p=[0.5, 0.3, 0.2])
    patches = (MEANS[c][:, :, None, None] + rng.normal(size=(n, 5, K, K)) * 400).astype(np.float32)
    train = TrainingData(patches, np.array([2, 5, 8])[c], rng.integers(0, 9, n), rng.normal(size=(n, 2)), BANDS)
    meta = ModelMeta("max_likelihood", BANDS, [2, 5, 8], ["a", "b", "c"], ["#000000"] * 3, K)
    model = build_model("max_likelihood", MaxLikelihoodConfig(priors=priors), meta, seed=0).fit(train)
    assert model.fit_info["n_features"] == 5 + 3 + 10  # bands, ndvi/ndwi/ndbi, window mean and std

    H, W = 40, 55
    cls = rng.integers(0, 3, size=(H // 8 + 1, W // 8 + 1)).repeat(8, 0).repeat(8, 1)[:H, :W]
    img = (MEANS[cls].transpose(2, 0, 1) + rng.normal(size=(5, H, W)) * 400).clip(1, 65535).astype(np.uint16)
    img[:, -4:, -7:] = 0
    profile = dict(driver="GTiff", width=W, height=H, count=5, dtype="uint16", nodata=0, crs="EPSG:32633")
    with rasterio.open(tmp_path / "scene.tif", "w", transform=from_origin(0, 0, 10, 10), **profile) as dst:
        dst.write(img)
    path = model.save(tmp_path / "ml.skops")
    classify_raster(
        load_model(path), tmp_path / "scene.tif", tmp_path / "map.tif", tmp_path / "conf.tif", window_size=24,
        workers=2, progress=False,
    )  # fmt: skip
    with rasterio.open(tmp_path / "map.tif") as a, rasterio.open(tmp_path / "conf.tif") as b:
        mapped, conf = a.read(1, masked=True), b.read(1, masked=True)

    f = img.astype(np.float32)
    f[:, (img == 0).all(axis=0)] = np.nan
    padded = np.pad(f, ((0, 0), (1, 1), (1, 1)), constant_values=np.nan)
    P = sliding_window_view(padded, (K, K), axis=(1, 2)).transpose(1, 2, 0, 3, 4).reshape(-1, 5, K, K)
    labels, post = _direct(model, model.features_from_patches(np.ascontiguousarray(P)))
    valid = ~mapped.mask
    assert valid.sum() == H * W - 4 * 7
    np.testing.assert_array_equal(mapped.data[valid], labels.reshape(H, W)[valid])
    # the confidence layer holds whole percent (uint8): the posterior rounded, 1 off at most at a .5 edge
    pct = np.rint(post.reshape(H, W)[valid] * 100.0)
    assert np.abs(conf.data[valid].astype(float) - pct).max() <= 1 and np.mean(conf.data[valid] == pct) > 0.99
    assert len(np.unique(labels.reshape(H, W)[valid])) == 3

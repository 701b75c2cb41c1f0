"""Features for the classical baselines: block features are bit-identical to patch features at every
pixel, and both equal a direct computation (the window's own nanmean / nanstd, the index formula)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.core.errors import InputError
from pipeline.sampling.features import FeatureSpec, auto_indices, box_sums, resolve_band
from pipeline.sampling.settings import FeatureConfig

BANDS = ("Blue", "green", "RED", "nir", "SWIR1", "swir_2")


def _patches_of(block: np.ndarray, k: int) -> np.ndarray:
    """Every k x k patch of a (bands, H+k-1, W+k-1) block, row-major -> (H*W, bands, k, k)."""
    b = block.shape[0]
    return sliding_window_view(block, (k, k), axis=(1, 2)).transpose(1, 2, 0, 3, 4).reshape(-1, b, k, k)


def _block(rng, h, w, nan_frac=0.1):
    blk = (rng.normal(size=(6, h, w)) * 300 + 2000).astype(np.float32)
    blk[:, rng.random((h, w)) < nan_frac] = np.nan  # whole-pixel nodata
    blk[2, 3:6, 4:15] = np.nan  # one band only
    blk[:, 12:24, 10:22] = np.nan  # a hole bigger than the window (all-NaN windows)
    blk[3, 1, 1] = -blk[2, 1, 1]  # nir + red == 0 -> NDVI undefined
    return blk


@pytest.mark.parametrize("patch_stats", [False, True])
@pytest.mark.parametrize("k", [1, 5, 9])
@pytest.mark.parametrize("offset", [None, (2000.0, 1990.5, 2010.0, 1800.0, 0.0, 2100.0)])
def test_block_equals_patches_everywhere(patch_stats, k, offset):
    rng = np.random.default_rng(k)
    spec = FeatureSpec(BANDS, ("ndvi", "ndwi", "ndbi", "nbr"), patch_stats, k, offset)
    h = spec.halo
    assert h == (k // 2 if patch_stats and k > 1 else 0)
    blk = _block(rng, 30 + 2 * h, 34 + 2 * h)
    fb = spec.from_block(blk)
    assert fb.shape == (30 * 34, spec.n_features) and fb.dtype == np.float32
    # patches of the model's size k centred on every output pixel (halo 0: pad to k for the patch path)
    pad = k // 2 - h
    padded = np.pad(blk, ((0, 0), (pad, pad), (pad, pad)), constant_values=np.nan)
    fp = spec.from_patches(_patches_of(padded, k))
    assert np.isfinite(fb).all() and np.isfinite(fp).all()
    # bit-identical, window statistics included: a map equals the model's predictions on patches
    np.testing.assert_array_equal(fb, fp)


@pytest.mark.parametrize("k", [3, 7, 13])
def test_context_features_equal_a_direct_computation(k):
    """Every feature of every pixel against its definition, computed here window by window in
    float64 with numpy's nanmean / nanstd, and the index formula on the centre pixel."""
    rng = np.random.default_rng(100 + k)
    spec = FeatureSpec.from_config(FeatureConfig(), BANDS, k)  # the defaults: auto indices + window stats
    assert spec.indices == ("ndvi", "ndwi", "ndbi", "nbr") and spec.halo == k // 2
    assert spec.names()[-2 * len(BANDS) :] == [f"{b}_mean" for b in BANDS] + [f"{b}_std" for b in BANDS]
    blk = _block(rng, 20 + k - 1, 23 + k - 1)
    f = spec.from_block(blk).reshape(20, 23, -1)
    r = k // 2
    red, nir, green, swir1, swir2 = 2, 3, 1, 4, 5
    for i in range(20):
        for j in range(23):
            win = blk[:, i : i + k, j : j + k].astype(np.float64).reshape(len(BANDS), -1)
            c = blk[:, i + r, j + r].astype(np.float64)
            with np.errstate(all="ignore"), warnings.catch_warnings(action="ignore", category=RuntimeWarning):
                mean, std = np.nanmean(win, axis=1), np.nanstd(win, axis=1)
                nd = [(c[a] - c[b]) / (c[a] + c[b]) for a, b in ((nir, red), (green, nir), (swir1, nir), (nir, swir2))]
            want = np.nan_to_num(np.concatenate([c, nd, mean, std]), nan=0.0)
            if c[red] + c[nir] == 0:
                want[len(BANDS)] = 0.0  # an undefined index is 0
            np.testing.assert_allclose(f[i, j], want, rtol=2e-6, atol=1e-4, err_msg=f"pixel {i}, {j}")


def test_box_sums_of_a_block_and_of_its_windows_are_identical():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(2, 40, 41)) * 1e3
    for k in (1, 2, 3, 6, 9, 15, 33):
        s = box_sums(a, k)
        assert s.shape == (2, 41 - k, 42 - k)
        cut = np.stack([a[:, i : i + k, j : j + k] for i in range(41 - k) for j in range(42 - k)], axis=1)
        np.testing.assert_array_equal(box_sums(cut, k)[..., 0, 0].reshape(s.shape), s)
        np.testing.assert_allclose(s, cut.sum(axis=(2, 3)).reshape(s.shape), rtol=1e-12, atol=1e-9)


def test_auto_indices_follow_the_band_names():
    s2 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
    assert auto_indices(s2) == ("ndvi", "ndwi", "ndbi", "nbr")
    spec = FeatureSpec.from_config(FeatureConfig(), s2, 5)
    assert spec.index_bands[0] == (7, 3)  # ndvi = (B08 - B04) / (B08 + B04), not B8A
    # Landsat 8 codes: B8 is panchromatic, B11 thermal, B4 red; no index from codes off Sentinel-2
    assert auto_indices([f"B{i}" for i in range(1, 12)]) == ()
    assert auto_indices(["blue", "green", "red", "nir", "swir1"]) == ("ndvi", "ndwi", "ndbi")
    assert auto_indices(["band_1", "band_2"]) == ()
    assert auto_indices(["red", "nir", "NIR"]) == ()  # two bands named alike: no guess
    # turned off: the centre pixel's bands only, as the models of version 0.1
    off = FeatureSpec.from_config(FeatureConfig(indices=[], patch_stats=False), BANDS, 9)
    assert off.names() == list(BANDS) and off.halo == 0
    # a 1 x 1 window has no context: no statistics columns, no halo
    assert FeatureSpec.from_config(FeatureConfig(), BANDS, 1).names() == list(BANDS) + list(auto_indices(BANDS))


def test_stats_values_and_nan_fill():
    spec = FeatureSpec(("a", "b"), (), True, 3)
    blk = np.full((2, 5, 5), np.nan, np.float32)
    blk[0, 1:4, 1:4] = np.arange(9, dtype=np.float32).reshape(3, 3)
    blk[1, 2, 2] = 7.0
    f = spec.from_block(blk).reshape(3, 3, -1)
    centre = f[1, 1]
    assert centre[0] == 4 and centre[1] == 7
    assert centre[2] == pytest.approx(4.0) and centre[3] == pytest.approx(7.0)
    assert centre[4] == pytest.approx(np.std(np.arange(9)), rel=1e-6) and centre[5] == 0
    assert spec.names() == ["a", "b", "a_mean", "b_mean", "a_std", "b_std"]
    # a patch with no valid pixel at all: every feature is the fill value 0
    assert (spec.from_patches(np.full((1, 2, 3, 3), np.nan, np.float32)) == 0).all()


def test_index_values():
    spec = FeatureSpec(("red", "nir", "green"), ("ndvi", "ndwi"))
    f = spec.from_patches(np.array([[[[1.0]], [[3.0]], [[1.0]]]], np.float32))
    assert f[0, 3] == pytest.approx(0.5) and f[0, 4] == pytest.approx(-0.5)


def test_missing_band_raises_input_error():
    with pytest.raises(InputError, match="swir2"):
        FeatureSpec(("red", "nir"), ("nbr",))
    with pytest.raises(InputError, match="'nir'"):
        FeatureSpec.from_config(FeatureConfig(indices=["ndvi"]), ["b1", "b2", "red"], 9)
    assert resolve_band("nir", ["B08", "B04"]) == 0 and resolve_band("red", ["B08", "B04"]) == 1

"""Features for the classical baselines: block features equal patch features at every pixel."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.core.errors import InputError
from pipeline.sampling.features import FeatureSpec, resolve_band
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
def test_block_equals_patches_everywhere(patch_stats, k):
    rng = np.random.default_rng(k)
    spec = FeatureSpec(BANDS, ("ndvi", "ndwi", "ndbi", "nbr"), patch_stats, k)
    h = spec.halo
    assert h == (k // 2 if patch_stats else 0)
    blk = _block(rng, 30 + 2 * h, 34 + 2 * h)
    fb = spec.from_block(blk)
    assert fb.shape == (30 * 34, spec.n_features) and fb.dtype == np.float32
    # patches of the model's size k centred on every output pixel (halo 0: pad to k for the patch path)
    pad = k // 2 - h
    padded = np.pad(blk, ((0, 0), (pad, pad), (pad, pad)), constant_values=np.nan)
    fp = spec.from_patches(_patches_of(padded, k))
    assert np.isfinite(fb).all() and np.isfinite(fp).all()
    nb = len(BANDS) + 4
    np.testing.assert_array_equal(fb[:, :nb], fp[:, :nb])  # centre values and indices: bit-identical
    np.testing.assert_allclose(fb, fp, rtol=1e-5, atol=1e-3)


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

import numpy as np
import pandas as pd
import pytest

from pipeline.patches import extract_patches, open_patches
from pipeline.raster import RasterStack


@pytest.mark.parametrize("k,window", [(1, 7), (5, 16), (9, 1000)])
def test_patches_equal_slices_of_padded_image(tmp_path, synthetic_scene, k, window):
    path, data = synthetic_scene
    rng = np.random.default_rng(1)
    rows = np.r_[0, 59, rng.integers(0, 60, 40)]  # include edge pixels
    cols = np.r_[0, 79, rng.integers(0, 80, 40)]
    samples = pd.DataFrame({"row": rows, "col": cols})
    with RasterStack.open(path) as stack:
        out = extract_patches(stack, samples, k, tmp_path / "p.npy", window_size=window, progress=False)
    store = open_patches(out)
    assert isinstance(store, np.memmap) and store.shape == (len(rows), 3, k, k)
    h = k // 2
    ref = np.full((3, 60 + 2 * h, 80 + 2 * h), np.nan, np.float32)
    ref[:, h:h + 60, h:h + 80] = data
    ref[:, h:h + 5, h:h + 5] = np.nan  # nodata corner
    for i, (r, c) in enumerate(zip(rows, cols)):
        np.testing.assert_array_equal(store[i], ref[:, r:r + k, c:c + k])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npy", "scene.tif"]  # no temporary left


def test_even_patch_size_refused(tmp_path, synthetic_scene):
    path, _ = synthetic_scene
    with RasterStack.open(path) as stack, pytest.raises(ValueError):
        extract_patches(stack, pd.DataFrame({"row": [1], "col": [1]}), 4, tmp_path / "p.npy")

import numpy as np
import pandas as pd
import pytest

from pipeline.inputs.raster import RasterStack
from pipeline.sampling.patches import extract_patches, open_patches


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
    assert store.shape == (len(rows), 3, k, k) and store.storage_dtype == np.uint16  # the raster's own dtype
    assert isinstance(store.raw, np.memmap)
    h = k // 2
    ref = np.full((3, 60 + 2 * h, 80 + 2 * h), np.nan, np.float32)
    ref[:, h : h + 60, h : h + 80] = data
    ref[:, h : h + 5, h : h + 5] = np.nan  # nodata corner
    for i, (r, c) in enumerate(zip(rows, cols)):
        np.testing.assert_array_equal(store[i], ref[:, r : r + k, c : c + k])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json", "p.npy", "scene.tif"]  # no temporary left


def test_even_patch_size_refused(tmp_path, synthetic_scene):
    path, _ = synthetic_scene
    with RasterStack.open(path) as stack, pytest.raises(ValueError):
        extract_patches(stack, pd.DataFrame({"row": [1], "col": [1]}), 4, tmp_path / "p.npy")


# ----------------------------------------------------------------------------- dtype-preserving store
from tests.conftest import write_raster  # noqa: E402


def _scene(tmp_path, dtype, nodata, name="s.tif", extreme_as_data=False):
    """A 4-band 50 x 70 raster of ``dtype`` with a nodata block (when ``nodata`` is set)."""
    rng = np.random.default_rng(3)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    lo, hi = (info.min, info.max) if info is not None else (-1e4, 1e4)
    data = rng.uniform(max(lo, -3e4), min(hi, 6e4), size=(4, 50, 70)).astype(dtype)
    if nodata is not None:
        data[:, 10:14, 20:25] = nodata
        data[2, 30, 30] = nodata  # one band only
    if extreme_as_data:
        data[1, 5, 5] = info.min if info.min < 0 else info.max
    return write_raster(tmp_path / name, data, nodata=nodata)


@pytest.mark.parametrize(
    "dtype,nodata,stored",
    [
        (np.uint16, 0, np.uint16),
        (np.uint16, None, np.uint16),
        (np.int16, -9999, np.int16),
        (np.uint8, 255, np.uint8),
        (np.int16, None, np.int16),
        (np.float32, -1.0, np.float32),
        (np.int32, None, np.float32),
        (np.uint8, None, np.uint8),
    ],
)
def test_dtype_store_is_bit_identical_to_float32_store(tmp_path, dtype, nodata, stored):
    path = _scene(tmp_path, dtype, nodata)
    rng = np.random.default_rng(4)
    samples = pd.DataFrame(
        {"row": np.r_[0, 49, 12, 30, rng.integers(0, 50, 200)], "col": np.r_[0, 69, 22, 30, rng.integers(0, 70, 200)]}
    )
    with RasterStack.open(path) as stack:
        a = open_patches(extract_patches(stack, samples, 5, tmp_path / "a.npy", window_size=16, progress=False))
        b = open_patches(
            extract_patches(stack, samples, 5, tmp_path / "b.npy", window_size=16, progress=False, keep_dtype=False)
        )
    assert a.storage_dtype == stored and b.storage_dtype == np.float32
    fa, fb = np.asarray(a), np.asarray(b)
    assert fa.dtype == np.float32 and np.isnan(fa).any()  # edge padding at least
    # Bit-identical, NaN included: compare the raw bytes.
    assert fa.tobytes() == fb.tobytes()
    if stored != np.float32:
        assert (tmp_path / "a.npy").stat().st_size < (tmp_path / "b.npy").stat().st_size


def test_extreme_value_used_as_data_falls_back_to_float32(tmp_path):
    path = _scene(tmp_path, np.uint16, None, extreme_as_data=True)
    samples = pd.DataFrame({"row": [5, 0, 20], "col": [5, 0, 20]})
    with RasterStack.open(path) as stack:
        st = open_patches(extract_patches(stack, samples, 3, tmp_path / "a.npy", progress=False))
        ref = stack.read(rasterio_window(4, 4, 3, 3))
    assert st.storage_dtype == np.float32
    np.testing.assert_array_equal(st[0], ref)  # 65535 is kept as a value, not turned into NaN
    assert st[0][1, 1, 1] == 65535


def rasterio_window(c, r, w, h):
    from rasterio.windows import Window

    return Window(c, r, w, h)


def test_store_subsets_are_index_lists_and_chunks_are_bounded(tmp_path):
    import pickle

    path = _scene(tmp_path, np.int16, -9999)
    rng = np.random.default_rng(5)
    samples = pd.DataFrame({"row": rng.integers(0, 50, 300), "col": rng.integers(0, 70, 300)})
    with RasterStack.open(path) as stack:
        # a chunk budget of 3 patches: many chunks per window, same result
        out = extract_patches(stack, samples, 7, tmp_path / "a.npy", progress=False, chunk_bytes=3 * 4 * 4 * 49)
        ref = np.asarray(open_patches(extract_patches(stack, samples, 7, tmp_path / "b.npy", progress=False)))
    st = open_patches(out)
    np.testing.assert_array_equal(np.asarray(st), ref)
    idx = rng.permutation(300)[:120]
    sub = st.take(idx)
    assert sub.shape == (120, 4, 7, 7) and sub.raw is st.raw  # no copy: the same memmap
    np.testing.assert_array_equal(sub[:], ref[idx])
    inner = np.array([5, 0, 119, 5])
    np.testing.assert_array_equal(sub.take(inner)[:], ref[idx[inner]])
    np.testing.assert_array_equal(sub[:, :, 3, 3], ref[idx][:, :, 3, 3])
    np.testing.assert_array_equal(sub[10:20], ref[idx[10:20]])
    mask = np.zeros(120, bool)
    mask[[1, 7]] = True
    np.testing.assert_array_equal(sub[mask], ref[idx][mask])
    again = pickle.loads(pickle.dumps(sub))  # loader workers reopen the file
    assert len(pickle.dumps(sub)) < ref[idx].nbytes / 10
    np.testing.assert_array_equal(again[:], ref[idx])


def test_window_for_bands_bounds_one_window():
    from pipeline.sampling.patches import WINDOW_BYTES, window_for_bands

    assert window_for_bands(512, 6) == 512  # few bands: unchanged
    w = window_for_bands(512, 218, halo=4)
    assert 32 <= w < 512 and w % 16 == 0 and 218 * (w + 8) ** 2 * 4 <= WINDOW_BYTES
    assert window_for_bands(512, 100000) == 32  # never below 32


def test_centre_pixels_of_a_store_need_one_chunk_of_memory_not_the_whole_store():
    """``store[:, :, c, c]`` decodes chunk by chunk and keeps only the centres: its peak memory is
    about one decoded chunk, not every chunk at once (218 bands: 400 MB at every training start)."""
    import tracemalloc

    from pipeline.sampling.patches import CHUNK_BYTES, PatchStore

    raw = np.random.default_rng(0).integers(-500, 3000, size=(8000, 20, 9, 9), dtype=np.int16)
    st = PatchStore(raw, fill=[-9999.0] * 20)
    decoded = 8000 * 20 * 81 * 4
    assert decoded > 4 * CHUNK_BYTES  # several chunks
    tracemalloc.start()
    try:
        centre = st[:, :, 4, 4]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(centre, raw[:, :, 4, 4].astype(np.float32))
    assert peak < 2.5 * CHUNK_BYTES < decoded / 2, (peak, decoded)

import numpy as np
import pytest
from conftest import write_raster
from rasterio.windows import Window

from pipeline.core.errors import InputError
from pipeline.inputs.raster import RasterAlignmentWarning, RasterStack, iter_windows


def test_multiband_equals_stacked_single_bands(tmp_path, synthetic_scene):
    path, data = synthetic_scene
    singles = [write_raster(tmp_path / f"b{i}.tif", data[i], nodata=0) for i in range(3)]
    with RasterStack.open(path) as a, RasterStack.open(singles) as b:
        assert a.band_names == ["b1", "b2", "b3"]  # from band descriptions
        assert b.band_names == ["b0", "b1", "b2"]  # from file stems
        wa, wb = a.read(Window(0, 0, 80, 60)), b.read(Window(0, 0, 80, 60))
        np.testing.assert_array_equal(wa, wb)
        assert a.grid == b.grid


def test_nodata_becomes_nan_per_band(tmp_path):
    b1 = np.arange(20, dtype=np.int16).reshape(4, 5)
    b2 = np.full((4, 5), 7.5, dtype=np.float32)
    b2[1, 1] = -9999
    p1 = write_raster(tmp_path / "a.tif", b1, nodata=3)
    p2 = write_raster(tmp_path / "b.tif", b2, nodata=-9999)
    with RasterStack.open([p1, p2]) as s:
        arr = s.read(Window(0, 0, 5, 4))
        assert arr.dtype == np.float32
        assert np.isnan(arr[0, 0, 3]) and np.isnan(arr[1, 1, 1])
        assert np.isfinite(arr).sum() == 40 - 2
        valid = s.valid_mask(Window(0, 0, 5, 4))
        assert valid.sum() == 18 and not valid[0, 3] and not valid[1, 1]
    with RasterStack.open([p1, p2], nodata=7.5) as s:  # override applies to every band
        arr = s.read(Window(0, 0, 5, 4))
        assert np.isfinite(arr[0]).all() and np.isnan(arr[1]).sum() == 19


def test_halo_read_outside_is_nan(synthetic_scene):
    path, data = synthetic_scene
    with RasterStack.open(path) as s:
        blk = s.read(Window(0, 0, 10, 10), halo=3)
        assert blk.shape == (3, 16, 16)
        assert np.isnan(blk[:, :3]).all() and np.isnan(blk[:, :, :3]).all()
        np.testing.assert_array_equal(blk[:, 8:16, 8:16], data[:, 5:13, 5:13].astype(np.float32))
        far = s.read(Window(200, 200, 4, 4), halo=1)
        assert np.isnan(far).all()


def test_band_selection(synthetic_scene):
    path, data = synthetic_scene
    with RasterStack.open(path, bands=["b3", 1]) as s:
        assert s.band_names == ["b3", "b1"]
        np.testing.assert_array_equal(s.read(Window(10, 10, 2, 2))[0], data[2, 10:12, 10:12])
    with pytest.raises(InputError, match="no band named 'nir'"):
        RasterStack.open(path, bands=["nir"])
    with pytest.raises(InputError, match="band 9 out of range"):
        RasterStack.open(path, bands=[9])
    with pytest.raises(InputError, match="2 names given for 3 bands"):
        RasterStack.open(path, band_names=["a", "b"])


def test_mismatched_grids_and_missing_crs(tmp_path):
    a = write_raster(tmp_path / "a.tif", np.zeros((5, 5), np.uint8))
    b = write_raster(tmp_path / "b.tif", np.zeros((5, 6), np.uint8))
    c = write_raster(tmp_path / "c.tif", np.zeros((5, 5), np.uint8), crs="EPSG:4326")
    # Another grid in the same CRS is warped onto the finest (a tie: the first file's), with a warning.
    with pytest.warns(RasterAlignmentWarning, match=r"not on the grid of .*a.tif.*: b.tif \(10 x 10\)"):
        with RasterStack.open([a, b]) as st:
            assert st.alignment["rule"] == "finest" and st.shape == (2, 5, 5)
    with pytest.raises(InputError, match="c.tif: CRS"):
        RasterStack.open([a, c])
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    nocrs = tmp_path / "nocrs.tif"
    # A file with neither CRS nor transform, on purpose; rasterio warns while writing it.
    with (
        pytest.warns(NotGeoreferencedWarning),
        rasterio.open(nocrs, "w", driver="GTiff", width=3, height=3, count=1, dtype="uint8") as d,
    ):
        d.write(np.zeros((1, 3, 3), np.uint8))
    with pytest.raises(InputError, match="nocrs.tif: raster has no CRS"):
        RasterStack.open(nocrs)
    notransform = tmp_path / "notransform.tif"
    with (
        pytest.warns(NotGeoreferencedWarning),
        rasterio.open(
            notransform, "w", driver="GTiff", width=3, height=3, count=1, dtype="uint8", crs="EPSG:32617"
        ) as d,
    ):
        d.write(np.zeros((1, 3, 3), np.uint8))
    with pytest.raises(InputError, match="notransform.tif: raster has no geotransform"):
        RasterStack.open(notransform)
    with pytest.raises(InputError, match="raster file not found"):
        RasterStack.open(tmp_path / "missing.tif")
    junk = tmp_path / "junk.tif"
    junk.write_text("not a tiff")
    with pytest.raises(InputError, match="junk.tif: not a readable raster"):
        RasterStack.open(junk)


def test_windows_cover_raster_once():
    cover = np.zeros((70, 45), int)
    for w in iter_windows(45, 70, 16):
        cover[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] += 1
    assert (cover == 1).all()


def test_all_bands_of_a_file_in_one_read(tmp_path):
    """A window of a many-band, pixel-interleaved file is one read call (not one per band),
    with the selection's order, per-band nodata and a halo reaching outside the raster."""
    import rasterio

    rng = np.random.default_rng(3)
    data = rng.integers(1, 500, size=(40, 30, 35)).astype(np.uint16)
    data[5, :3, 30:33] = 0  # nodata of band 6, inside the window read below
    path = write_raster(tmp_path / "hyper.tif", data, nodata=0)
    with rasterio.open(path) as ds:
        assert ds.interleaving.name.lower() == "pixel"
    sel = [7, 1, 40, 6]  # out of order: the output follows the selection
    with RasterStack.open(path, bands=sel) as s:
        calls = []
        ds = s._datasets[0]
        real_read = ds.read
        s._datasets[0] = type("Counting", (), {"read": lambda self, *a, **k: calls.append(a) or real_read(*a, **k)})()
        block = s.read(Window(30, 0, 5, 10), halo=2)
        s._datasets[0] = ds
    assert len(calls) == 1
    want = np.full((4, 14, 9), np.nan, np.float32)
    want[:, 2:, :7] = data[[b - 1 for b in sel], 0:12, 28:35]
    want[3, 2:5, 2:5] = np.nan  # band 6's nodata pixels
    np.testing.assert_array_equal(block, want)
    assert np.isfinite(block).sum() == 4 * 12 * 7 - 9

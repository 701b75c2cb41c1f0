"""Shared fixtures: the demo scene, the shared real scenes, small synthetic rasters."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Prefect must never reach out, and unit tests must not start an engine by accident.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="module")
def torch_one_thread():
    """One intra-op torch thread for modules of tiny nets: they gain nothing from two, and on a
    shared 2-core machine two threads made those tests several times slower."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="session")
def nc_scene() -> Path:
    """Folder of the North Carolina demo scene (fetched once into the local cache)."""
    from pipeline.sample_data import scene_dir

    return scene_dir("nc-landsat7")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


def write_raster(path: Path, data: np.ndarray, crs: str = "EPSG:32633", origin=(500000.0, 4000000.0),
                 res: float = 10.0, nodata=None, descriptions=None) -> Path:
    """Write a (bands, rows, cols) array as a GeoTIFF."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype, crs=crs, transform=from_origin(origin[0], origin[1], res, res), nodata=nodata)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if descriptions:
            for i, d in enumerate(descriptions, 1):
                dst.set_band_description(i, d)
    return path


@pytest.fixture
def synthetic_scene(tmp_path: Path):
    """A 3-band 60 x 80 uint16 raster with two spectrally distinct halves and a nodata corner."""
    rng = np.random.default_rng(0)
    rows, cols = 60, 80
    data = np.empty((3, rows, cols), dtype=np.uint16)
    left = np.arange(cols) < cols // 2
    for b in range(3):
        base = np.where(left, 1000 + 300 * b, 3000 - 200 * b)
        data[b] = (base[None, :] + rng.integers(0, 50, size=(rows, cols))).astype(np.uint16)
    data[:, :5, :5] = 0  # nodata corner
    path = write_raster(tmp_path / "scene.tif", data, nodata=0, descriptions=["b1", "b2", "b3"])
    return path, data


def pytest_unconfigure(config):
    # Prefect's ephemeral server logs "Stopping temporary server" from an atexit hook, after
    # pytest has closed the captured streams; without this, logging prints a spurious traceback.
    import logging

    logging.raiseExceptions = False

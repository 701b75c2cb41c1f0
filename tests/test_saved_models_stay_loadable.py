"""Model files users already have keep working: files saved by version 0.1.0 (before the package
layout moved every module, see tests/data/models_v0_1/README.md) load and map their scene to the
same classes and confidence as when they were trained.

0.1.0 wrote confidence as float32 in [0, 1] (NaN nodata); maps now hold whole percent in uint8
(255 nodata, :mod:`pipeline.mapping.legends`). The stored float32 files stay as they were: the
comparison rounds them to percent, allowing one point where a value lies within float32
noise of a half percent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import run_cli

from pipeline import classify_raster
from pipeline.models import load_model

DATA = Path(__file__).parent / "data" / "models_v0_1"
FILES = {
    "decision_tree": "decision_tree.skops",
    "random_forest": "random_forest.skops",
    "svm": "svm.skops",
    "max_likelihood": "max_likelihood.skops",
    "cnn": "cnn.pt",
    "resnet": "resnet.pt",
}


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1, masked=True).filled(np.nan if src.dtypes[0].startswith("float") else 255)


@pytest.mark.parametrize("name", sorted(FILES))
def test_a_model_saved_by_0_1_0_maps_as_it_did(name, tmp_path, torch_one_thread):
    model = load_model(DATA / FILES[name])
    assert model.name == name
    out = classify_raster(
        model,
        DATA / "scene.tif",
        tmp_path / "map.tif",
        tmp_path / "conf.tif",
        window_size=48,
        workers=1,
        progress=False,
    )
    assert out["pixels"] == 96 * 96
    np.testing.assert_array_equal(_read(tmp_path / "map.tif"), _read(DATA / f"{name}_map.tif"))
    with rasterio.open(tmp_path / "conf.tif") as src:
        assert (src.dtypes[0], src.nodata, src.units[0]) == ("uint8", 255, "%")
        pct = src.read(1)
    old = _read(DATA / f"{name}_confidence.tif")  # float32 written by 0.1.0
    np.testing.assert_array_equal(pct == 255, np.isnan(old))
    valid = ~np.isnan(old)
    assert np.abs(pct[valid].astype(int) - np.rint(old[valid] * 100)).max() <= 1


def test_the_cli_maps_with_a_model_saved_by_0_1_0(tmp_path):
    proc = run_cli(
        "map", "--model", DATA / "random_forest.skops", "--raster", DATA / "scene.tif", "--out", tmp_path / "rf.tif"
    )
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(_read(tmp_path / "rf.tif"), _read(DATA / "random_forest_map.tif"))

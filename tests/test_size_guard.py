"""A raster whose header claims far more pixels than any map should have (200000 x 200000 px in
a file of a few hundred kB) is refused in one line naming the file, its size and the setting
that raises the limit, before any pixel is read or written: ``landcover map`` (``--max-pixels``),
``serve`` (a failed scene) and a run's map stage (``mapping.max_pixels``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import write_raster
from rasterio.transform import from_origin

from pipeline.cli.main import main
from pipeline.core.errors import InputError
from pipeline.mapping.classify import classify_raster
from pipeline.mapping.settings import DEFAULT_MAX_PIXELS, MappingConfig

BANDS = ["b1", "b2", "b3"]


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    from pipeline.models.base import ModelMeta, TrainingData
    from pipeline.models.settings import DecisionTreeConfig
    from pipeline.models.trees import DecisionTreeModel

    x = np.random.default_rng(0).integers(100, 5000, (60, 3)).astype(np.float32)
    meta = ModelMeta("decision_tree", BANDS, [1, 2], ["a", "b"], ["#ff0000", "#0000ff"], 1)
    td = TrainingData(x[:, :, None, None], np.where(x[:, 0] > 2500, 1, 2), np.arange(60), np.zeros((60, 2)), BANDS)
    return DecisionTreeModel(DecisionTreeConfig(), meta, seed=0).fit(td).save(tmp_path / "runs" / "tree.skops")


@pytest.fixture
def huge_header(tmp_path: Path) -> Path:
    """200000 x 200000 x 3 uint16 whose tiles were never written: a few hundred kB on disk."""
    path = tmp_path / "huge.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=200_000,
        height=200_000,
        count=3,
        dtype="uint16",
        crs="EPSG:32633",
        transform=from_origin(500000, 4000000, 10, 10),
        tiled=True,
        blockxsize=1024,
        blockysize=1024,
        sparse_ok=True,
        BIGTIFF="YES",
    ) as dst:
        dst.descriptions = tuple(BANDS)
    assert path.stat().st_size < 2_000_000
    return path


def test_map_refuses_an_absurd_header_in_one_line(huge_header, model_path, tmp_path, capsys):
    out = tmp_path / "m.tif"
    rc = main(["map", "--model", str(model_path), "--raster", str(huge_header), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"landcover: error: {huge_header}: 200000 x 200000 px (40.0 Gpx, "), err
    assert "--max-pixels" in err[0] and "40000000000" in err[0]
    assert not out.exists()


def test_the_limit_is_a_setting_that_can_be_raised(model_path, tmp_path, capsys):
    img = write_raster(tmp_path / "s.tif", np.full((3, 100, 100), 1000, np.uint16), descriptions=BANDS)
    args = ["map", "--model", str(model_path), "--raster", str(img), "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a.tif"), "--max-pixels", "9999"]) == 2
    assert "100 x 100 px" in capsys.readouterr().err and not (tmp_path / "a.tif").exists()
    assert main([*args, "--out", str(tmp_path / "b.tif"), "--max-pixels", "10000"]) == 0
    assert main([*args, "--out", str(tmp_path / "c.tif")]) == 0  # the default
    assert MappingConfig().max_pixels == DEFAULT_MAX_PIXELS
    from pipeline.models import load_model

    with pytest.raises(InputError, match=r"s\.tif: 100 x 100 px .* \(mapping\.max_pixels\)"):
        classify_raster(load_model(model_path), img, tmp_path / "d.tif", max_pixels=500, progress=False)
    assert not (tmp_path / "d.tif").exists()


def test_serve_fails_the_scene_with_an_absurd_header(huge_header, model_path, tmp_path):
    from pipeline.runner.batch import map_one_scene

    scene = {"path": str(huge_header), "key": "k", "name": "huge-0", "max_pixels": DEFAULT_MAX_PIXELS}
    with pytest.raises(InputError, match="200000 x 200000 px .*mapping.max_pixels / --max-pixels"):
        map_one_scene(scene, str(model_path), str(tmp_path / "out"), 512, 1)
    assert not list((tmp_path / "out").rglob("*.tif")) if (tmp_path / "out").exists() else True

"""``landcover map`` uses the nodata the model was trained with (issue #11 item 6)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

sys.path.insert(0, str(Path(__file__).parent))
from prefect_fixtures import prefect_api  # noqa: F401
from unseen_scenes import (
    class_image,
    polygons_on_cells,
    spectra,
    write_config,
    write_raster,
)


@pytest.mark.prefect
def test_map_command_reproduces_the_run_map_with_config_nodata(prefect_api, tmp_path):
    from pipeline.cli import main

    folder = tmp_path / "scene"
    folder.mkdir()
    cls = class_image(48, 48)
    data = np.clip(spectra(cls), 1, None).astype(np.uint16)
    data[:, :, 40:] = 0  # a strip without data, but the file declares no nodata: the config says 0
    tr = from_origin(500000.0, 4000000.0, 30.0, 30.0)
    write_raster(folder / "scene.tif", data, tr, "EPSG:32633", nodata=None)
    gdf = polygons_on_cells(cls, tr, "EPSG:32633")
    gdf[gdf.geometry.centroid.x < 500000.0 + 40 * 30.0].to_file(folder / "labels.gpkg")
    cfg = write_config(
        folder / "config.yaml", ["scene.tif"], "labels.gpkg", rasters={"nodata": 0}, split={"random_contrast": False}
    )
    assert main(["run", str(cfg), "--out", str(tmp_path / "runs"), "--run-id", "r", "--no-progress"]) == 0
    run = tmp_path / "runs" / "r"
    model = run / "models" / "decision_tree.skops"
    from pipeline.models import load_model

    assert load_model(model).meta.nodata == [0.0, 0.0, 0.0]
    out = tmp_path / "again.tif"
    assert (
        main(["map", "--model", str(model), "--raster", str(folder / "scene.tif"), "--out", str(out), "--no-progress"])
        == 0
    )
    with rasterio.open(out) as a, rasterio.open(run / "maps" / "decision_tree.tif") as b:
        again, original = a.read(1), b.read(1)
    np.testing.assert_array_equal(again, original)
    assert (original[:, 40:] == 255).all() and (original[:, :40] != 255).all()
    # --nodata overrides: with 65535 as nodata the zero strip is classified like any other pixel
    other = tmp_path / "other.tif"
    assert (
        main(
            [
                "map",
                "--model",
                str(model),
                "--raster",
                str(folder / "scene.tif"),
                "--out",
                str(other),
                "--nodata",
                "65535",
                "--no-progress",
            ]
        )
        == 0
    )
    with rasterio.open(other) as o:
        strip = o.read(1)[:, 40:]
    assert (strip != 255).all()
    assert json.loads((run / "labels.json").read_text())["band_nodata"] == [0.0, 0.0, 0.0]

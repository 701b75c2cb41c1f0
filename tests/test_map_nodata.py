"""``landcover map`` uses the nodata the model was trained with (issue #11 item 6)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
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
    from pipeline.cli.main import main

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


@pytest.mark.parametrize(
    "value, dtype, fits",
    [
        (0, "uint16", True),
        (65535, "uint16", True),
        (65536, "uint16", False),
        (99999, "uint16", False),
        (-1, "uint8", False),
        (255, "uint8", True),
        (-9999, "int16", True),
        (-32769, "int16", False),
        (0.5, "int32", False),
        (float("nan"), "int16", False),
        (float("nan"), "float32", True),
        (99999.5, "float32", True),
        (-1e30, "float64", True),
    ],
)
def test_nodata_fits_follows_the_data_type_limits(value, dtype, fits):
    from pipeline.inputs.raster import nodata_fits

    assert nodata_fits(value, dtype) is fits


def test_map_with_a_nodata_no_pixel_can_hold_is_one_line_exit_2(tmp_path):
    """``--nodata 99999`` on a uint16 raster would drop the file's own nodata and map those pixels
    as a class: one line naming the option, the value, the file and its data type; nothing written."""
    import os
    import subprocess

    from conftest import write_raster

    from pipeline import LandcoverClassifier
    from pipeline.inputs.class_table import NODATA_CLASS

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    X = np.where(y[:, None] == 0, [1000.0, 1400.0], [3000.0, 2500.0]) + rng.normal(0, 40, (400, 2))
    model = LandcoverClassifier("decision_tree").fit(X, y).model_.save(tmp_path / "tree.skops")
    img = X.reshape(20, 20, 2).transpose(2, 0, 1).astype(np.uint16)
    img[:, :5] = 0
    raster = write_raster(tmp_path / "scene.tif", img, nodata=0, descriptions=["band_1", "band_2"])
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    base = [sys.executable, "-m", "pipeline.cli", "map", "--model", str(model), "--raster", str(raster)]
    for value, shown in [("99999", "99999"), ("1.5", "1.5")]:
        out = tmp_path / f"map_{shown}.tif"
        proc = subprocess.run(
            [*base, "--out", str(out), "--nodata", value], capture_output=True, text=True, env=env, timeout=300
        )
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert f"--nodata {shown}" in lines[0] and str(raster) in lines[0] and "uint16" in lines[0]
        assert not out.exists() and list(tmp_path.glob("map_*")) == []
    # a value the data type holds is still an override: the zero strip is classified
    ok = tmp_path / "ok.tif"
    proc = subprocess.run(
        [*base, "--out", str(ok), "--nodata", "65535", "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(ok) as src:
        assert (src.read(1)[:5] != NODATA_CLASS).all()


def test_run_with_a_rasters_nodata_the_dtype_cannot_hold_stops_in_one_line(tmp_path):
    """``rasters.nodata: 99999`` on a uint16 image: one line naming the key, value, file and data
    type, exit 2, and no run directory that looks like a run (no metrics, no report)."""
    import subprocess

    from tiny_project import make_project

    cfg = make_project(tmp_path / "p", models={"decision_tree": {}})
    c = yaml.safe_load(cfg.read_text())
    c["rasters"]["nodata"] = 99999
    cfg.write_text(yaml.safe_dump(c))
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(cfg), "--out", str(tmp_path / "runs")]
        + ["--engine", "local", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("landcover: error")]  # beside INFO lines
    assert "rasters.nodata 99999" in line and "scene.tif is uint16" in line, proc.stderr
    assert not list((tmp_path / "runs").rglob("metrics.json")) and not list((tmp_path / "runs").rglob("report.html"))

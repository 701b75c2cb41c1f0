"""Labels that cannot be used are counted and shown; empty or constant bands are named or
dropped (issue #11 items 4 and 5). Each case runs the CLI end to end on a tiny synthetic scene
(``--engine local``: the same stage functions as the Prefect flow, without its start-up cost)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from rasterio.transform import from_origin

sys.path.insert(0, str(Path(__file__).parent))
from unseen_scenes import (
    class_image,
    points_scene,
    polygons_on_cells,
    spectra,
    write_config,
    write_raster,
)

SNOW = {"id": 4, "name": "snow", "color": "#ffffff"}
OUTSIDE = {"water": 100, "forest": 90, "urban": 99, "snow": 0}


def _run(cfg: Path, out: Path, run_id: str, *extra: str, capsys=None) -> tuple[int, str]:
    from pipeline.cli.main import main

    rc = main(["run", str(cfg), "--out", str(out), "--run-id", run_id, "--no-progress", "--engine", "local", *extra])
    err = capsys.readouterr().err if capsys else ""
    return rc, err


@pytest.fixture(scope="module")
def points_run(tmp_path_factory):
    """339 points, 309 outside the raster; class 'snow' has 20 points, all outside."""
    base = tmp_path_factory.mktemp("points")
    cfg = points_scene(
        base / "scene",
        n_inside_per_class=10,
        n_outside={**OUTSIDE, "snow": 20},
        extra_classes=[SNOW],
        split={"random_contrast": False},
    )
    handler = _Capture()
    logging.getLogger("pipeline").addHandler(handler)
    try:
        rc, _ = _run(cfg, base / "runs", "pts")
    finally:
        logging.getLogger("pipeline").removeHandler(handler)
    return base, cfg, rc, "\n".join(handler.lines)


class _Capture(logging.Handler):
    """Keeps the messages of the run's log records (its console warnings)."""

    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_points_outside_the_raster_are_counted_per_class(points_run):
    base, _, rc, logs = points_run
    assert rc == 0
    run = base / "runs" / "pts"
    lab = json.loads((run / "labels.json").read_text())
    assert lab["features_read"] == 30 + 309
    assert lab["features_used"] == 30
    per = lab["features_per_class"]
    # every feature has a geometry: none repaired, none without or with an invalid one
    fine = {"repaired": 0, "no_geometry": 0, "invalid_geometry": 0}
    assert per["water"] == {"read": 110, "used": 10, "outside_raster": 100, "no_pixel": 0, "on_nodata": 0, **fine}
    assert per["urban"]["outside_raster"] == 99 and per["snow"] == {
        "read": 20,
        "used": 0,
        "outside_raster": 20,
        "no_pixel": 0,
        "on_nodata": 0,
        **fine,
    }
    assert (
        "309 of 339 features cannot be used: 309 outside the raster (water 100, forest 90, urban 99, snow 20)" in logs
    )
    m = json.loads((run / "metrics.json").read_text())
    assert m["labels"]["features_used"] == 30
    md = (run / "report.md").read_text()
    assert "Labels and bands that could not be used" in md and "30 of 339 label features were used" in md


def test_class_without_usable_labels_is_left_out_with_the_reason(points_run):
    base, _, _rc, logs = points_run
    run = base / "runs" / "pts"
    lab = json.loads((run / "labels.json").read_text())
    assert lab["classes_without_labels"] == {"snow": "20 feature(s): 20 outside the raster"}
    assert "class 'snow' has no usable labels (20 feature(s): 20 outside the raster); it is left out" in logs
    assert "Class snow has no usable labels" in (run / "report.md").read_text()
    m = json.loads((run / "metrics.json").read_text())
    assert set(m["models"]) == {"decision_tree"}


def test_strict_keeps_the_stop(points_run, capsys):
    base, cfg, _, _ = points_run
    rc, err = _run(cfg, base / "runs", "strict", "--strict", capsys=capsys)
    assert rc == 2
    assert "class 'snow' has no labelled pixels on valid data" in err and "20 outside the raster" in err
    assert not (base / "runs" / "strict" / "metrics.json").exists()


def _subprocess_run(cfg: Path, out: Path) -> tuple[int, str]:
    """``landcover run`` in its own process (clean console streams), local engine: bad input stops in prepare."""
    import os
    import subprocess

    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli.main",
            "run",
            str(cfg),
            "--out",
            str(out),
            "--run-id",
            "x",
            "--no-progress",
            "--engine",
            "local",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    return proc.returncode, proc.stderr


def _nodata_band_scene(folder: Path, bad: str = "all", **extra) -> Path:
    """4-band scene; band 3 ("swir") is nodata everywhere ("all"), constant ("constant"), or only
    where the labels are ("labels": the left half, all polygons lie there)."""
    folder.mkdir(parents=True, exist_ok=True)
    cls = class_image(48, 48)
    data = spectra(cls, n_bands=4)
    data[data <= 0] = 1  # keep 0 free for nodata
    if bad == "all":
        data[2] = 0
    elif bad == "constant":
        data[2] = 500
    tr = from_origin(500000.0, 4000000.0, 30.0, 30.0)
    gdf = polygons_on_cells(cls, tr, "EPSG:32633")
    if bad == "labels":
        data[2, :, :24] = 0
        gdf = gdf[gdf.geometry.centroid.x < 500000.0 + 24 * 30.0]
    from pipeline.inputs.raster import RasterStack  # noqa: F401 - the scene is read by the run

    path = write_raster(folder / "scene.tif", data, tr, "EPSG:32633", nodata=0)
    import rasterio

    with rasterio.open(path, "r+") as dst:
        for i, n in enumerate(["blue", "green", "swir", "nir"], 1):
            dst.set_band_description(i, n)
    gdf.to_file(folder / "labels.gpkg")
    return write_config(folder / "config.yaml", ["scene.tif"], "labels.gpkg", **extra)


@pytest.mark.parametrize(
    "bad,why", [("all", "swir: nodata or NaN everywhere"), ("constant", "swir: constant (500) everywhere")]
)
def test_empty_band_is_named_with_the_fix(tmp_path, bad, why):
    cfg = _nodata_band_scene(tmp_path / "scene", bad)
    rc, err = _subprocess_run(cfg, tmp_path / "runs")
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("landcover: error")]
    assert len(lines) == 1 and why in lines[0]
    assert "rasters.bands: [blue, green, nir]" in lines[0] and "rasters.drop_empty_bands: true" in lines[0]
    assert "Traceback" not in err


def test_empty_band_dropped_on_request(tmp_path, capsys):
    cfg = _nodata_band_scene(
        tmp_path / "scene", "all", rasters={"drop_empty_bands": True}, split={"random_contrast": False}
    )
    rc, err = _run(cfg, tmp_path / "runs", "drop", capsys=capsys)
    assert rc == 0, err
    run = tmp_path / "runs" / "drop"
    lab = json.loads((run / "labels.json").read_text())
    assert lab["dropped_bands"] == {"swir": "nodata or NaN everywhere"}
    assert lab["band_names"] == ["blue", "green", "nir"]
    from pipeline.models import load_model

    assert load_model(run / "models" / "decision_tree.skops").meta.band_names == ["blue", "green", "nir"]
    m = json.loads((run / "metrics.json").read_text())
    assert m["models"]["decision_tree"]["overall_accuracy"] > 0.8
    assert "swir (nodata or NaN everywhere)" in (run / "report.md").read_text()


def test_no_valid_labelled_pixel_names_the_band(tmp_path):
    cfg = _nodata_band_scene(tmp_path / "scene", "labels")
    rc, err = _subprocess_run(cfg, tmp_path / "runs")
    assert rc == 2
    line = next(ln for ln in err.splitlines() if ln.startswith("landcover: error"))
    assert "no labelled pixels fall on valid data" in line and "band(s) swir (100% of them)" in line

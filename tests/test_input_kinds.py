"""New kinds of real input on the first try (issue #23), each run end to end through the CLI on
fixtures written here (:mod:`input_kinds`): a CSV of longitude/latitude points over a raster in
the MODIS sinusoidal projection, band files at 10, 20 and 60 m trained without settings and
mapped again, band files named S2_B02.tif ... mapped in another order, a date stack of unnamed
single-band files mapped with ``--dates``, a label raster with 0 as background, polygons with
invalid geometries, and bad input stopping in ``prepare``.

Runs are ``--engine local`` (the stage functions of the Prefect flow, without its start-up) in a
subprocess where the console is what is checked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from conftest import run_cli

sys.path.insert(0, str(Path(__file__).parent))
from input_kinds import (
    DATES,
    NDVI_NODATA,
    SINUSOIDAL,
    date_stack_scene,
    invalid_polygons_scene,
    mixed_resolution_scene,
    s2_band_files_scene,
    sinusoidal_points_scene,
)

RUN = ("--no-progress", "--engine", "local")


def _run(cfg: Path, out: Path, run_id: str = "r"):
    return run_cli("run", cfg, "--out", out, "--run-id", run_id, *RUN)


def _python_warnings(stderr: str) -> list[str]:
    """Lines of Python warnings (``file.py:12: UserWarning: ...``) on the console."""
    return [ln for ln in stderr.splitlines() if "Warning:" in ln and not ln.startswith("WARNING ")]


def _same_map(a: Path, b: Path) -> bool:
    with rasterio.open(a) as x, rasterio.open(b) as y:
        return x.transform == y.transform and x.crs == y.crs and np.array_equal(x.read(1), y.read(1))


# ----------------------------------------------------------------------------- 1, 7: a CSV of points
@pytest.fixture(scope="module")
def points(tmp_path_factory):
    base = tmp_path_factory.mktemp("points")
    cfg, table = sinusoidal_points_scene(base / "modis")
    proc = _run(cfg, base / "runs")
    return base / "runs" / "r", table, proc


def test_a_csv_of_lon_lat_points_over_a_sinusoidal_raster_runs(points):
    run, table, proc = points
    assert proc.returncode == 0, proc.stderr
    lab = json.loads((run / "labels.json").read_text())
    assert lab["kind"] == "table" and lab["geometry"] == "points"
    assert lab["coordinates"] == {"x": "Longitude", "y": "Latitude", "crs": "EPSG:4326", "crs_from": "column names"}
    # Every point with coordinates is one labelled pixel: the pixel holding its longitude/latitude
    # projected to sinusoidal with pyproj, located with the raster's own transform.
    from pyproj import Transformer

    ok = table.dropna()
    ok = ok[ok["Latitude"].abs() <= 90]
    xs, ys = Transformer.from_crs("EPSG:4326", SINUSOIDAL, always_xy=True).transform(
        ok["Longitude"].to_numpy(), ok["Latitude"].to_numpy()
    )
    with rasterio.open(run.parent.parent / "modis" / "modis.tif") as src:
        rows, cols = rasterio.transform.rowcol(src.transform, xs, ys)
    samples = pd.read_parquet(run / "samples.parquet")
    assert set(zip(samples["row"], samples["col"])) == set(zip(np.asarray(rows), np.asarray(cols)))
    assert dict(zip(zip(samples["row"], samples["col"]), samples["class_name"])) == dict(
        zip(zip(np.asarray(rows), np.asarray(cols)), ok["class"])
    )
    # the row without coordinates and the one at latitude 95 are counted, per class (item 8)
    water = lab["features_per_class"]["water"]
    assert water["no_geometry"] == 1 and water["invalid_geometry"] == 1
    assert lab["features_read"] == len(table) and lab["features_used"] == len(ok)
    assert (run / "maps" / "decision_tree.tif").is_file()
    assert not _python_warnings(proc.stderr), proc.stderr


def test_point_labels_are_called_points_in_the_report(points):
    md = (points[0] / "report.md").read_text()
    assert "Every point is on one side only" in md
    assert "polygon lies whole" not in md
    assert "one point per row of the table, from columns Longitude and Latitude in EPSG:4326" in md
    # the headline, the tables and the per-label section name points too (issue #23.7)
    m = json.loads((points[0] / "metrics.json").read_text())
    rk = m["evidence"]["test_set"]["ranking"]
    head = md.split("\n\n")[1]
    assert f"test pixels from {rk['polygons']:,} point{'s' if rk['polygons'] != 1 else ''} in " in head
    assert "polygon" not in head
    assert "| test points |" in md and "test polygons" not in md
    assert "## Reference points" in md and "Reference polygons" not in md
    assert "Each test point (feature: its 0-based row in the label file)" in md
    for why in m["evidence"]["not_assessable"].values():
        assert "polygon" not in why
    summary = points[2].stdout[points[2].stdout.index("Run directory:") :]
    assert "polygon" not in summary, summary


def test_a_table_without_coordinates_is_one_line_and_leaves_no_run_directory(tmp_path):
    cfg, _ = sinusoidal_points_scene(tmp_path / "modis")
    pd.DataFrame({"where": ["here"], "class": ["water"]}).to_csv(tmp_path / "modis" / "samples.csv", index=False)
    proc = _run(cfg, tmp_path / "runs", "bad")
    assert proc.returncode == 2
    err = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("INFO")]
    assert len(err) == 1, proc.stderr
    assert "samples.csv: no geometry and no coordinate columns" in err[0] and "labels.x" in err[0]
    assert "(columns: where, class)" in err[0]
    assert "Traceback" not in proc.stderr
    # item 9: a run stopped by bad input in prepare leaves no folder that looks like a run
    assert not (tmp_path / "runs" / "bad").exists()


# ----------------------------------------------------------------------------- 2, 4, 5: band files on three grids
@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    base = tmp_path_factory.mktemp("mixed")
    cfg, bands = mixed_resolution_scene(base / "s2", models={"decision_tree": {}, "max_likelihood": {}})
    proc = _run(cfg, base / "runs")
    return base, base / "runs" / "r", bands, proc


def test_band_files_at_10_20_60_m_run_without_settings_on_the_finest_grid(mixed):
    _, run, bands, proc = mixed
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(run / "maps" / "decision_tree.tif") as m, rasterio.open(bands[0]) as b02:
        assert (m.width, m.height, m.transform, m.crs) == (b02.width, b02.height, b02.transform, b02.crs)
    from pipeline.models import load_model

    al = load_model(run / "models" / "decision_tree.skops").meta.alignment
    assert al["rule"] == "finest" and al["res"] == [10.0, 10.0] and Path(al["reference"]) == bands[0]
    assert {Path(p).name: r for p, r in al["warped"].items()} == {
        bands[1].name: [20.0, 20.0],
        bands[2].name: [60.0, 60.0],
    }


def test_the_warp_warning_is_said_once_per_run(mixed):
    """Two models: seven stages open the scene, prepare several times; the console and run.log say it once."""
    _, run, bands, proc = mixed
    lines = [ln for ln in proc.stderr.splitlines() if "not on the grid of" in ln]
    assert len(lines) == 1, proc.stderr
    assert bands[1].name in lines[0] and bands[2].name in lines[0] and "finest band's grid" in lines[0]
    assert (run / "run.log").read_text().count("not on the grid of") == 1
    assert not _python_warnings(proc.stderr), proc.stderr


def test_coarser_bands_are_repeated_onto_the_10_m_grid(mixed):
    """The stack's 20 and 60 m bands equal their files' pixels repeated 2 and 6 times (nearest neighbour)."""
    from pipeline.inputs.raster import RasterStack

    _, _, bands, _ = mixed
    raw = []
    for p in bands:
        with rasterio.open(p) as src:
            raw.append(src.read(1).astype(np.float32))
    with RasterStack.open(bands, warn=False) as st:
        block = st.read(rasterio.windows.Window(0, 0, st.grid.width, st.grid.height))
    for i, k in enumerate((1, 2, 6)):
        np.testing.assert_array_equal(block[i], np.kron(raw[i], np.ones((k, k), np.float32)))


def test_landcover_map_reproduces_the_run_map_pixel_for_pixel_without_options(mixed):
    base, run, bands, _ = mixed
    for model in ("decision_tree", "max_likelihood"):
        suffix = ".skops"
        out = base / f"again_{model}.tif"
        proc = run_cli(
            "map", "--model", run / "models" / f"{model}{suffix}", "--raster", *bands, "--out", out, "--no-progress"
        )
        assert proc.returncode == 0, proc.stderr
        assert _same_map(out, run / "maps" / f"{model}.tif")
        assert "differs from the" not in proc.stderr  # same pixel size: no word about it


def test_map_says_when_the_pixel_size_differs_from_the_model(mixed):
    """A half-resolution copy of the 10 m band makes a 20 m image: mapped, with one warning."""
    from rasterio.enums import Resampling

    base, run, bands, _ = mixed
    half = base / "B02_half.tif"
    with rasterio.open(bands[0]) as src:
        data = src.read(out_shape=(1, src.height // 2, src.width // 2), resampling=Resampling.average)
        profile = {**src.profile, "driver": "GTiff", "width": src.width // 2, "height": src.height // 2}
        profile["transform"] = src.transform * src.transform.scale(2, 2)
    with rasterio.open(half, "w", **profile) as dst:
        dst.write(data)
    out = base / "half_map.tif"
    proc = run_cli(
        "map",
        "--model",
        run / "models" / "decision_tree.skops",
        "--raster",
        half,
        *bands[1:],
        "--out",
        out,
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "pixel size" in ln]
    assert len(lines) == 1 and "pixel size 20 x 20 m differs from the 10 x 10 m pixels" in lines[0], proc.stderr
    with rasterio.open(out) as m:
        assert m.res == (20.0, 20.0)


def test_a_label_raster_with_0_as_background_runs_with_one_warning(mixed):
    base, run, _, proc = mixed
    with rasterio.open(base / "s2" / "labels.tif") as src:
        assert src.nodata is None
        zeros = int((src.read(1) == 0).sum())
    lab = json.loads((run / "labels.json").read_text())
    assert lab["background_value"] == 0 and lab["background_pixels"] == zeros
    assert lab["unknown_labels"] == {}
    lines = [ln for ln in proc.stderr.splitlines() if "unlabelled background" in ln]
    assert len(lines) == 1 and f"its {zeros} pixels" in lines[0]
    md = (run / "report.md").read_text()
    assert f"{zeros:,} pixels of value 0 were taken as unlabelled background" in md
    assert "Every labelled region lies whole on one side" in md
    # a region is named by the pipeline's number and where it lies, never as a row of a file (#23.7)
    m = json.loads((run / "metrics.json").read_text())
    rk = m["evidence"]["test_set"]["ranking"]
    assert f"test pixels from {rk['polygons']:,} labelled regions in " in md.split("\n\n")[1]
    assert "## Reference labelled regions" in md and "0-based row" not in md
    assert "| test labelled regions |" in md
    first = m["polygons"]["polygons"][0]
    assert f"| labelled region {first['group']} at ({first['x']:.0f}, {first['y']:.0f}) | {first['class_name']} |" in md
    section = md[md.index("## Reference labelled regions") :]
    assert "feature " not in section[: section.index("\n## ")]


def test_other_values_of_a_label_raster_still_follow_on_unknown(tmp_path):
    cfg, _ = mixed_resolution_scene(tmp_path / "s2", n=48)
    lab = tmp_path / "s2" / "labels.tif"
    with rasterio.open(lab, "r+") as dst:
        a = dst.read(1)
        a[:2, :2] = 7  # not a class
        dst.write(a, 1)
    proc = _run(cfg, tmp_path / "runs", "x")
    assert proc.returncode == 2
    assert "label raster has values not in the class table: 7" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "runs" / "x").exists()


# ----------------------------------------------------------------------------- band files in another order
@pytest.fixture(scope="module")
def s2_files(tmp_path_factory):
    base = tmp_path_factory.mktemp("s2files")
    cfg, files = s2_band_files_scene(base / "s2")
    proc = _run(cfg, base / "runs")
    assert proc.returncode == 0, proc.stderr
    return base, base / "runs" / "r", files


def _map(model: Path, files: list[Path], out: Path):
    return run_cli("map", "--model", model, "--raster", *files, "--out", out, "--no-progress")


def test_band_files_in_another_order_map_as_in_the_models_order(s2_files):
    """``--raster S2_*.tif`` in any order: the files are matched to the model's bands B02 ... B8A by
    their names, and the map equals the one from the files in training order, pixel for pixel."""
    base, run, files = s2_files
    model = run / "models" / "decision_tree.skops"
    proc = _map(model, files, base / "in_order.tif")
    assert proc.returncode == 0, proc.stderr
    assert _same_map(base / "in_order.tif", run / "maps" / "decision_tree.tif")
    shuffled = [files[3], files[2], files[0], files[1]]  # B8A, B08, B02, B04
    proc = _map(model, shuffled, base / "shuffled.tif")
    assert proc.returncode == 0, proc.stderr
    assert _same_map(base / "shuffled.tif", base / "in_order.tif")
    (line,) = [ln for ln in proc.stderr.splitlines() if "by their names" in ln]
    assert line.startswith("INFO ") and "S2_B8A.tif as B8A" in line and "S2_B04.tif as B04" in line
    assert "order given" not in proc.stderr and "carry no names" not in proc.stderr


def test_band_files_naming_a_band_twice_are_one_line_and_exit_2(s2_files):
    """An old copy of B04 given in place of B08: not taken in order as B08, but one line naming the files."""
    base, run, files = s2_files
    old = base / "S2_B04_old.tif"
    old.write_bytes(files[1].read_bytes())
    proc = _map(run / "models" / "decision_tree.skops", [files[0], files[1], old, files[3]], base / "twice.tif")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "ambiguously" in line and "B04 in S2_B04.tif and S2_B04_old.tif; no file for B08" in line, proc.stderr
    assert not (base / "twice.tif").exists()


# ----------------------------------------------------------------------------- 3, 6: a date stack
@pytest.fixture(scope="module")
def dates(tmp_path_factory):
    base = tmp_path_factory.mktemp("dates")
    cfg, files = date_stack_scene(base / "ndvi")
    proc = _run(cfg, base / "runs")
    assert proc.returncode == 0, proc.stderr
    return base, base / "runs" / "r", files


def test_a_date_stack_of_unnamed_single_band_files_maps_with_dates(dates):
    base, run, files = dates
    model = run / "models" / "decision_tree.skops"
    out = base / "again.tif"
    proc = run_cli(
        "map", "--model", model, "--raster", *files, "--dates", ",".join(DATES), "--out", out, "--no-progress"
    )
    assert proc.returncode == 0, proc.stderr
    assert _same_map(out, run / "maps" / "decision_tree.tif")
    assert "assuming each date's are NDVI in this order" in proc.stderr
    # another year's files in the same order: the same map, with a word about the dates
    other = [d.replace("2019", "2020") for d in DATES]
    proc = run_cli(
        "map",
        "--model",
        model,
        "--raster",
        *files,
        "--dates",
        ",".join(other),
        "--out",
        base / "y2020.tif",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    assert "differ from the model's" in proc.stderr
    assert _same_map(base / "y2020.tif", run / "maps" / "decision_tree.tif")


def test_map_says_when_the_models_nodata_replaces_the_files(dates):
    """Files declaring -32768 as nodata, mapped with a model trained on -3000: said in one line."""
    base, run, files = dates
    copies = []
    for p in files:
        with rasterio.open(p) as src:
            data, profile = src.read(), {**src.profile, "nodata": -32768}
        q = base / f"declared_{p.name}"
        with rasterio.open(q, "w", **profile) as dst:
            dst.write(data)
        copies.append(q)
    proc = run_cli(
        "map",
        "--model",
        run / "models" / "decision_tree.skops",
        "--raster",
        *copies,
        "--dates",
        ",".join(DATES),
        "--out",
        base / "declared.tif",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "declares nodata" in ln]
    assert len(lines) == 1, proc.stderr
    assert f"declares nodata -32768, but the model was trained with nodata {NDVI_NODATA}" in lines[0]


# ----------------------------------------------------------------------------- 8: invalid geometries
def test_invalid_and_empty_geometries_are_repaired_or_counted_without_library_warnings(tmp_path):
    cfg = invalid_polygons_scene(tmp_path / "poly")
    proc = _run(cfg, tmp_path / "runs")
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "runs" / "r"
    per = json.loads((run / "labels.json").read_text())["features_per_class"]
    assert (per["water"]["repaired"], per["water"]["invalid_geometry"], per["water"]["no_geometry"]) == (1, 0, 0)
    assert (per["forest"]["repaired"], per["forest"]["invalid_geometry"]) == (0, 1)
    assert per["urban"]["no_geometry"] == 1
    assert per["water"]["used"] == per["water"]["read"]  # the repaired bow tie labels pixels
    assert "repaired 1 invalid geometry with make_valid (water 1)" in proc.stderr
    md = (run / "report.md").read_text()
    assert "Invalid geometries repaired with make_valid and used: 1 (water 1)" in md
    assert "| invalid geometry |" in md
    assert not _python_warnings(proc.stderr), proc.stderr

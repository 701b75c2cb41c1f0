"""The scale benchmark runs end to end at a tiny size; its fits and memory figures are right."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio

from bench.scale import REPO, loglog_fit, main
from bench.synthetic import write_raster


def test_loglog_fit_recovers_a_power_law():
    x = [1e6, 4e6, 16e6, 64e6]
    fit = loglog_fit(x, [3.0 * v**1.5 for v in x])
    assert fit["exponent"] == pytest.approx(1.5) and np.exp(fit["log_intercept"]) == pytest.approx(3.0)
    assert loglog_fit([5.0, 5.0], [1.0, 2.0]) is None  # one distinct x: no slope


def test_child_peak_rss_is_its_own():
    """A child of a process holding 400 MB reports its own peak, not the parent's (ru_maxrss would)."""
    held = np.ones(400 * 2**20 // 8)
    held[:] = 2.0
    code = "from bench.procstat import peak_rss_mb; print(peak_rss_mb())"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert float(out.stdout) < 200, out.stdout
    del held


def test_write_raster_is_pixel_interleaved_with_a_labelled_sample(tmp_path):
    smp = write_raster(tmp_path / "r.tif", 80, 5, seed=1, n_sample=200, patch=3)
    with rasterio.open(tmp_path / "r.tif") as ds:
        assert (ds.count, ds.width, ds.height, ds.dtypes[0]) == (5, 80, 80, "uint16")
        assert ds.interleaving.name.lower() == "pixel" and ds.nodata == 0
        data = ds.read()
    n = len(smp["y"])
    assert n > 100 and smp["X"].shape == (n, 5) and smp["patches"].shape == (n, 5, 3, 3)
    # the sample holds the raster's values at its pixels, and the patch centres are those pixels
    cols, rows = np.floor(smp["xy"]).astype(int).T
    assert np.array_equal(smp["X"], data[:, rows, cols].T.astype(np.float32))
    assert np.array_equal(smp["patches"][:, :, 1, 1], smp["X"])


def test_bench_scale_tiny(tmp_path, capsys):
    out = tmp_path / "scale.json"
    rc = main(
        [
            "--sizes",
            "48,96",
            "--bands",
            "2,5",
            "--bands-size",
            "48",
            "--models",
            "io_floor,io_floor_map,decision_tree",
            "--bands-models",
            "io_floor",
            "--max-size",
            "decision_tree=48",
            "--repeats",
            "2",
            "--window-size",
            "32",
            "--n-train",
            "300",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path),
        ]
    )
    assert rc == 0
    rep = json.loads(out.read_text())
    size, bands = rep["axes"]["size"], rep["axes"]["bands"]
    assert set(size["models"]) == {"io_floor", "io_floor_map", "decision_tree"}
    assert set(bands["models"]) == {"io_floor"}
    floor_map = {p["value"]: p["seconds"] for p in size["models"]["io_floor_map"]["points"]}
    assert rep["checks"]["decision_tree_over_io_floor_map"] == pytest.approx(
        {"48": size["models"]["decision_tree"]["points"][0]["seconds"] / floor_map[48]}
    )
    # --max-size keeps the decision tree at 48 px: one point, no fit
    dt = size["models"]["decision_tree"]
    assert [p["value"] for p in dt["points"]] == [48] and dt["time_fit"] is None
    assert dt["projection"]["method"].startswith("linear")  # one point: linear, and said so
    io = size["models"]["io_floor"]
    assert [p["value"] for p in io["points"]] == [48, 96]
    for model in (io, bands["models"]["io_floor"]):
        for p in model["points"]:
            assert len(p["seconds_all"]) == 2 and p["seconds"] == pytest.approx(np.median(p["seconds_all"]))
            assert p["peak_rss_mb"] >= p["rss_before_mb"] > 0
        xs = [p["x"] for p in model["points"]]
        want = np.polyfit(np.log(xs), np.log([p["seconds"] for p in model["points"]]), 1)[0]
        assert model["time_fit"]["exponent"] == pytest.approx(want)
    assert [p["x"] for p in io["points"]] == [48.0**2, 96.0**2]
    proj = io["projection"]
    assert proj["value"] == 10980 and proj["seconds"] > 0 and proj["peak_rss_mb"] > 0
    assert "| io_floor |" in capsys.readouterr().out


def test_bench_scale_dask_workers_axis(tmp_path):
    """The workers axis maps one raster's windows on local Dask clusters of 1 and 2 workers."""
    pytest.importorskip("distributed")
    out = tmp_path / "scale.json"
    rc = main(
        [
            "--axes",
            "workers",
            "--dask-workers",
            "1,2",
            "--workers-size",
            "64",
            "--workers-model",
            "decision_tree",
            "--repeats",
            "1",
            "--window-size",
            "32",
            "--n-train",
            "300",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path),
        ]
    )
    assert rc == 0
    rep = json.loads(out.read_text())
    pts = rep["axes"]["workers"]["models"]["decision_tree"]["points"]
    assert [p["value"] for p in pts] == [1, 2]
    # 64 x 64 px in 32-px windows: 4 windows, all mapped, over 1 and then 2 workers
    assert pts[0]["windows_per_worker"] == [4] and sum(pts[1]["windows_per_worker"]) == 4
    assert rep["checks"]["dask_speedup"]["decision_tree"] == pytest.approx(pts[0]["seconds"] / pts[1]["seconds"])


def test_labelled_axis_runs_whole_pipelines(tmp_path):
    """The labelled-pixels axis: one whole run per point in its own process, with its sampling facts."""
    out = tmp_path / "scale.json"
    rc = main(
        [
            "--axes",
            "labelled",
            "--labelled",
            "900",
            "--labelled-models",
            "decision_tree",
            "--repeats",
            "1",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path),
        ]
    )
    assert rc == 0
    ax = json.loads(out.read_text())["axes"]["labelled"]
    (p,) = ax["models"]["decision_tree"]["points"]
    assert p["value"] == 900 and p["returncode"] == 0 and p["labelled_pixels"] == 900
    assert p["sampling"]["active"] is False and p["patch_store_mb"] > 0
    assert p["peak_rss_mb"] >= p["rss_before_mb"] > 0 and p["seconds"] > 0


def test_axes_and_cases_measured_in_separate_runs_add_to_one_report(tmp_path):
    """A run of some axes keeps the other axes of an existing scale.json; scale_mem entries of other
    cases and engines survive a later run (the file is read again just before it is written)."""
    from bench.scale import _earlier_axes
    from bench.scale_mem import add_entry

    out = tmp_path / "scale.json"
    out.write_text(json.dumps({"benchmark": "scale", "axes": {"size": {"x": "pixels"}, "labelled": {"x": "old"}}}))
    assert _earlier_axes(out, exclude={"labelled"}) == {"size": {"x": "pixels"}}
    out.write_text(json.dumps({"benchmark": "baselines", "axes": {"size": {}}}))  # another benchmark's file
    assert _earlier_axes(out, exclude=set()) == {}
    assert _earlier_axes(tmp_path / "absent.json", exclude=set()) == {}

    mem = tmp_path / "bench" / "scale_mem.json"
    add_entry(mem, "hyper218", {"peak_rss_mb": 1350.0})
    add_entry(mem, "hyper218-local", {"peak_rss_mb": 1294.0})
    rep = add_entry(mem, "hyper218", {"peak_rss_mb": 1300.0})
    assert json.loads(mem.read_text()) == rep
    assert rep["hyper218"] == {"peak_rss_mb": 1300.0} and rep["hyper218-local"] == {"peak_rss_mb": 1294.0}

"""A raster in degrees (EPSG:4326) runs end to end with true class areas (issue #11 item 1)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import Resampling, calculate_default_transform, reproject

sys.path.insert(0, str(Path(__file__).parent))
from unseen_scenes import (
    class_image,
    polygons_on_cells,
    spectra,
    write_config,
    write_raster,
)

UTM = "EPSG:32633"
ORIGIN = (500000.0, 4000000.0)  # about 36.1 N, 15 E
RES = 30.0
SIZE = 96


@pytest.fixture(scope="module")
def geo_run(tmp_path_factory):
    """A UTM scene reprojected to EPSG:4326 as single-band 8-bit files (labels stay in UTM), run
    with the CLI, as the Sentinel-2 delivery of the issue."""
    from pipeline.cli.main import main

    folder = tmp_path_factory.mktemp("geo")
    cls = class_image(SIZE, SIZE, cell=16)
    tr = from_origin(*ORIGIN, RES, RES)
    data = np.clip(spectra(cls) / 8, 1, 255).astype(np.uint8)  # 0 stays free for nodata
    dst_tr, w, h = calculate_default_transform(
        UTM, "EPSG:4326", SIZE, SIZE, *rasterio.transform.array_bounds(SIZE, SIZE, tr)
    )
    names = []
    for b in range(3):
        geo = np.zeros((1, h, w), np.uint8)
        reproject(
            data[b],
            geo[0],
            src_transform=tr,
            src_crs=UTM,
            dst_transform=dst_tr,
            dst_crs="EPSG:4326",
            resampling=Resampling.nearest,
            dst_nodata=0,
        )
        write_raster(folder / f"B{b + 2}.tif", geo, dst_tr, "EPSG:4326", nodata=0)
        names.append(f"B{b + 2}.tif")
    polygons_on_cells(cls, tr, UTM, cell=16, inset=4).to_file(folder / "labels_utm.gpkg")
    cfg = write_config(
        folder / "config.yaml", names, "labels_utm.gpkg", models={"decision_tree": {}}, split={"random_contrast": False}
    )
    rc = main(["run", str(cfg), "--out", str(folder / "runs"), "--run-id", "geo", "--no-progress", "--engine", "local"])
    return folder, folder / "runs" / "geo", rc


def _utm_areas_ha(map_4326: Path, res: float = 5.0) -> dict[int, float]:
    """Class areas of a 4326 class map measured independently: warped to UTM at ``res`` metres."""
    with rasterio.open(map_4326) as src:
        dst_tr, w, h = calculate_default_transform(src.crs, UTM, src.width, src.height, *src.bounds, resolution=res)
        out = np.full((h, w), 255, np.uint8)
        reproject(
            src.read(1),
            out,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=dst_tr,
            dst_crs=UTM,
            resampling=Resampling.nearest,
            src_nodata=255,
            dst_nodata=255,
        )
    vals, counts = np.unique(out[out != 255], return_counts=True)
    return {int(v): float(n) * res * res / 1e4 for v, n in zip(vals, counts)}


def test_geographic_scene_runs_end_to_end(geo_run):
    _, run, rc = geo_run
    assert rc == 0
    m = json.loads((run / "metrics.json").read_text())
    dt = m["models"]["decision_tree"]
    assert dt["overall_accuracy"] > 0.9
    # split defaults in pixels, converted to degrees: blocks and buffer are fractions of a degree
    assert 0 < m["split"]["buffer"] < 0.01 and 0 < m["split"]["block_size"] < 1
    assert m["split"]["audit"]["train_patches_touching_test_pixels"] == 0


def test_class_areas_match_the_scene_in_utm(geo_run):
    _, run, _ = geo_run
    m = json.loads((run / "metrics.json").read_text())
    areas = m["models"]["decision_tree"]["class_areas"]
    utm = _utm_areas_ha(run / "maps" / "decision_tree.tif")
    names = {c["id"]: c["name"] for c in m["classes"]}
    for cid, want in utm.items():
        got = areas[names[cid]]["area_ha"]
        assert abs(got - want) / want < 0.005, (names[cid], got, want)
    # a naive degrees-squared reading would be off by orders of magnitude; pixel count x the
    # mean pixel area would be close but not exact: the per-row areas are what is used
    adj = m["models"]["decision_tree"]["area_adjusted"]
    assert adj["pixel_area_ha"] == pytest.approx(
        sum(a["area_ha"] for a in areas.values()) / sum(a["pixels"] for a in areas.values())
    )
    total = sum(utm.values())
    assert sum(a["area_ha"] for a in areas.values()) == pytest.approx(total, rel=0.005)


def test_crs_without_measurable_areas_stops_in_prepare(tmp_path, capsys):
    from pipeline.cli.main import main

    cls = class_image(32, 32)
    write_raster(
        tmp_path / "local.tif", spectra(cls), from_origin(100, 100, 1, 1), 'LOCAL_CS["arbitrary",UNIT["metre",1]]'
    )
    polygons_on_cells(cls, from_origin(100, 100, 1, 1), UTM).to_file(tmp_path / "l.gpkg")
    cfg = write_config(tmp_path / "c.yaml", ["local.tif"], "l.gpkg")
    rc = main(["run", str(cfg), "--out", str(tmp_path / "runs"), "--run-id", "x", "--no-progress", "--engine", "local"])
    err = capsys.readouterr().err
    assert rc == 2 and "local.tif" in err and "neither projected nor geographic" in err
    assert not (tmp_path / "runs" / "x" / "models").exists()  # stopped before any training


def test_assess_commands_on_a_geographic_map(geo_run, tmp_path):
    """``landcover assess-design`` and ``assess`` on the 4326 map: strata sizes are true areas."""
    import geopandas as gpd

    from pipeline.cli.main import main

    _, run, _ = geo_run
    map_path = run / "maps" / "decision_tree.tif"
    sample = tmp_path / "sample.gpkg"
    assert main(["assess-design", str(map_path), "--n", "60", "--min-per-class", "10", "--out", str(sample)]) == 0
    s = gpd.read_file(sample)
    s["reference"] = s["map_class_name"]  # a perfect reference: estimates equal the mapped areas
    s.to_file(sample)
    out = tmp_path / "acc.json"
    assert main(["assess", str(map_path), str(sample), "--field", "reference", "--json", str(out)]) == 0
    acc = json.loads(out.read_text())
    areas = json.loads((run / "metrics.json").read_text())["models"]["decision_tree"]["class_areas"]
    est = acc.get("area_adjusted", acc)
    for name, a in areas.items():
        if a["pixels"]:
            assert est["classes"][name]["mapped_area_ha"] == pytest.approx(a["area_ha"], rel=1e-6)
            assert est["classes"][name]["area_ha"] == pytest.approx(a["area_ha"], rel=1e-6)


def test_report_gives_block_size_and_buffer_in_degrees(geo_run):
    # The report once said "block size: 0.00 map units; buffer: 0.00 map units" for a degree CRS.
    _, run, _ = geo_run
    m = json.loads((run / "metrics.json").read_text())
    line = next(t for t in (run / "report.md").read_text().splitlines() if t.startswith("Strategy:"))
    assert f"block size: {m['split']['block_size']:.4g} degree;" in line, line
    assert f"buffer: {m['split']['buffer']:.4g} degree;" in line, line
    assert "0.00 " not in line


def test_min_train_test_distance_in_metres_and_pixels_in_degrees(geo_run):
    # The audit measures in map units: "0.00" in the report for a raster in degrees. The nearest
    # training-test pair is also given in metres (geodesic) and pixels: checked here against every
    # pair's geodesic distance on the WGS84 ellipsoid.
    import pandas as pd
    from pyproj import Geod

    _, run, _ = geo_run
    m = json.loads((run / "metrics.json").read_text())
    audit = m["split"]["audit"]
    samples = pd.read_parquet(run / "samples.parquet")
    xy = samples[["x", "y"]].to_numpy()
    best = np.inf
    for f in json.loads((run / "folds.json").read_text()):
        tr, te = np.asarray(f["train"]), np.asarray(f["test"])
        a = np.repeat(xy[tr], len(te), axis=0)
        b = np.tile(xy[te], (len(tr), 1))
        best = min(best, float(np.min(Geod(ellps="WGS84").inv(a[:, 0], a[:, 1], b[:, 0], b[:, 1])[2])))
    assert audit["min_train_test_distance_m"] == pytest.approx(best, rel=0.01)
    with rasterio.open(run.parent.parent / "B2.tif") as src:
        res = src.res
    assert audit["min_train_test_distance_px"] == pytest.approx(audit["min_train_test_distance"] / res[0], rel=0.3)
    row = next(t for t in (run / "report.md").read_text().splitlines() if t.startswith("| min train-test distance"))
    assert f"= {audit['min_train_test_distance_m']:.1f} m (" in row and "degree" in row, row

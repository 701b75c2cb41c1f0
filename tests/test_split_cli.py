"""End to end through the CLI: a four-polygon scene (one polygon per class) gets a leak-free spatial
test with sub-blocks; a label file's split column is honoured; the split outputs are true layers."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import yaml
from shapely.geometry import Point, box

from pipeline.cli.main import main
from tests.conftest import write_raster

CLASSES = ["water", "forest", "urban", "crop"]
ORIGIN = (600_000.0, 5_000_000.0)
RES = 10.0


def _scene(tmp_path: Path, split_column: bool) -> Path:
    """An 80 x 80 3-band raster in EPSG:32632, four 30 x 30-pixel polygons (one per class) with
    distinct spectra; optionally a `split` field (left part train, right part test)."""
    rng = np.random.default_rng(0)
    data = rng.integers(100, 140, size=(3, 80, 80)).astype(np.uint16)
    quads = [(5, 5), (5, 45), (45, 5), (45, 45)]  # (row, col) of each polygon's top-left corner
    rows = []
    for c, (r0, c0) in enumerate(quads):
        data[:, r0 : r0 + 30, c0 : c0 + 30] += (np.array([200, 400, 600])[:, None, None] * (c + 1) % 900).astype(
            np.uint16
        )
        x0, y1 = ORIGIN[0] + c0 * RES, ORIGIN[1] - r0 * RES
        if split_column:  # the user's split: two polygons per class, a thin strip between them
            rows.append({"class": CLASSES[c], "split": "train", "geometry": box(x0, y1 - 300, x0 + 180, y1)})
            rows.append({"class": CLASSES[c], "split": "test", "geometry": box(x0 + 200, y1 - 300, x0 + 300, y1)})
        else:
            rows.append({"class": CLASSES[c], "geometry": box(x0, y1 - 300, x0 + 300, y1)})
    write_raster(tmp_path / "img.tif", data, crs="EPSG:32632", origin=ORIGIN, res=RES)
    gpd.GeoDataFrame(rows, crs="EPSG:32632").to_file(tmp_path / "labels.gpkg")
    cfg = {
        "name": "four",
        "seed": 1,
        "rasters": {"paths": ["img.tif"], "band_names": ["b1", "b2", "b3"]},
        "labels": {"path": "labels.gpkg", "field": "class"},
        "classes": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)],
        "patch": {"size": 3},
        "models": {"decision_tree": {}},
        "mapping": {"window_size": 64},
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "cfg.yaml"


def _run(cfg: Path, out: Path, *sets: str) -> Path:
    args = ["run", str(cfg), "--out", str(out), "--run-id", "r", "--no-progress", "--engine", "local"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    return out / "r"


@pytest.mark.parametrize("strategy", ["blocks", "kfold"])
def test_four_polygon_scene_end_to_end(tmp_path, strategy):
    run = _run(_scene(tmp_path, split_column=False), tmp_path / "runs", f"split.strategy={strategy}", "split.k=3")
    m = json.loads((run / "metrics.json").read_text())
    sp = m["split"]
    assert sp["strategy"] == strategy and sp["group_by"] == "auto"
    assert sp["sub_blocked_classes"] == CLASSES
    # the audit's counts (patches touching the other side's pixels), not its train-test distances
    counts = {k: v for k, v in sp["audit"].items() if "_patches_touching_" in k}
    assert len(counts) == 4 and all(v == 0 for v in counts.values()), sp["audit"]
    for part in sp.get("folds", [sp]):
        assert all(part["counts"]["train"][c] > 0 for c in CLASSES)
    assert all(sum(p["counts"]["test"][c] for p in sp.get("folds", [sp])) > 0 for c in CLASSES)
    assert set(m["models"]["decision_tree"]["per_class"]) == set(CLASSES)
    # samples.parquet is GeoParquet with the CRS, and still a plain table for pandas
    g = gpd.read_parquet(run / "samples.parquet")
    assert g.crs.to_epsg() == 32632 and np.allclose(g.geometry.x, g["x"])
    p = pd.read_parquet(run / "samples.parquet")
    assert {"x", "y", "split", "block", "fold", "class_name"} <= set(p.columns) and len(p) == len(g)
    # splits.gpkg: one point per sample, and every sample inside its own block's polygon
    pts = gpd.read_file(run / "splits.gpkg", layer="samples")
    blocks = gpd.read_file(run / "splits.gpkg", layer="blocks").set_index("block")
    assert len(pts) == len(p) and {"split", "block", "fold", "class", "scene"} <= set(pts.columns)
    assert pts.crs.to_epsg() == 32632 and (pts["split"].to_numpy() == p["split"].to_numpy()).all()
    inside = blocks.geometry.loc[pts["block"]].reset_index(drop=True).covers(pts.geometry.reset_index(drop=True))
    assert inside.mean() == 1.0
    report = (run / "report.md").read_text() if (run / "report.md").exists() else (run / "report.html").read_text()
    assert "unseen parts of the same polygons" in report
    # the random contrast is a random pixel split of the same samples, sub-blocks or not
    c = m["random_split_contrast"]["decision_tree"]
    assert c["overall_accuracy_random"] is not None and c["overall_accuracy_spatial"] is not None


def test_point_labels_with_a_split_column(tmp_path):
    cfg = _scene(tmp_path, split_column=True)
    polys = gpd.read_file(tmp_path / "labels.gpkg")
    rng = np.random.default_rng(3)
    pts = []
    for _, row in polys.iterrows():  # 12 points per polygon, each keeps its polygon's class and split
        x0, y0, x1, y1 = row.geometry.bounds
        for x, y in zip(rng.uniform(x0 + 5, x1 - 5, 12), rng.uniform(y0 + 5, y1 - 5, 12)):
            pts.append({"class": row["class"], "split": row["split"].upper(), "geometry": Point(x, y)})
    gpd.GeoDataFrame(pts, crs=polys.crs).to_file(tmp_path / "points.gpkg")
    run = _run(cfg, tmp_path / "runs", "split.strategy=predefined", "labels.path=points.gpkg")
    s = pd.read_parquet(run / "samples.parquet")
    lab = gpd.read_file(tmp_path / "points.gpkg")
    np.testing.assert_array_equal(s["split"].to_numpy(), lab["split"].str.lower().to_numpy()[s["group"].to_numpy()])
    assert set(s["split"]) == {"train", "test"}


def test_label_file_split_column_is_honoured(tmp_path):
    run = _run(_scene(tmp_path, split_column=True), tmp_path / "runs", "split.strategy=predefined")
    m = json.loads((run / "metrics.json").read_text())
    assert m["split"]["strategy"] == "predefined" and m["split"]["source"] == "column 'split'"
    s = pd.read_parquet(run / "samples.parquet")
    lab = gpd.read_file(tmp_path / "labels.gpkg")
    expect = lab["split"].to_numpy()[s["group"].to_numpy()]
    np.testing.assert_array_equal(s["split"].to_numpy(), expect)
    # the 2-pixel strip lets 3x3 patches of the training side touch no test pixel: the audit says 0
    assert m["split"]["audit"]["train_patches_touching_test_pixels"] == 0


def test_leaking_predefined_split_runs_and_is_reported(tmp_path):
    cfg = _scene(tmp_path, split_column=True)
    run = _run(cfg, tmp_path / "runs", "split.strategy=predefined", "patch.size=7")
    m = json.loads((run / "metrics.json").read_text())
    assert m["split"]["audit"]["train_patches_touching_test_pixels"] > 0  # reported, the run went on
    assert "decision_tree" in m["models"]

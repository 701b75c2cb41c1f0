"""Whole runs on designed scenes: the figures of metrics.json and the report recomputed in the test
from the run's own test predictions by other means (issue #26 points 3-6).

The scene: N square polygons per class on well-separated spectra, except that every other urban
polygon has forest spectra (a designed accuracy of 0 on those polygons, about 1 elsewhere), and a
fourth class with a single polygon (not assessable). A second scene has no signal at all and a
test set that is 80% one class: no model can beat a constant map, and the headline must say so.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import yaml
from rasterio.transform import from_origin
from scipy import stats
from shapely.geometry import box
from unseen_scenes import write_raster

CLASSES = [
    {"id": 1, "name": "water", "color": "#2166ac"},
    {"id": 2, "name": "forest", "color": "#1b7837"},
    {"id": 3, "name": "urban", "color": "#e31a1c"},
    {"id": 4, "name": "bare", "color": "#bababa"},
]
MEANS = {1: (300.0, 200.0, 150.0), 2: (600.0, 900.0, 500.0), 3: (1500.0, 1300.0, 1600.0), 4: (2500, 2600, 2400)}
CELL, SIZE, RES = 12, 96, 30.0


def designed_scene(folder: Path, signal: bool = True, shares=(1, 2, 3), seed: int = 0) -> Path:
    """An 8 x 8 grid of 6 x 6-pixel polygons. ``signal``: spectra by class, every other urban
    polygon with forest spectra, one bare polygon; else every pixel the same noise and classes
    dealt by ``shares``. Returns the config path."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tr = from_origin(500000.0, 4000000.0, RES, RES)
    img = np.empty((3, SIZE, SIZE), np.float32)
    for b in range(3):
        img[b] = MEANS[1][b] + rng.normal(0, 40, (SIZE, SIZE))
    geoms, names, look = [], [], []
    n = SIZE // CELL
    urban = 0
    for i in range(n):
        for j in range(n):
            k = i * n + j
            cls = shares[k % len(shares)] if signal else (2 if k % 5 else 1)
            if signal and k == n * n - 1:
                cls = 4  # one bare polygon: not assessable
            spectra = cls
            if signal and cls == 3:
                spectra = 2 if urban % 2 else 3  # every other urban polygon looks like forest
                urban += 1
            r0, c0 = i * CELL + 3, j * CELL + 3
            if signal:
                for b in range(3):
                    img[b, r0 : r0 + 6, c0 : c0 + 6] = MEANS[spectra][b] + rng.normal(0, 40, (6, 6))
            x0, y0 = tr * (c0, r0)
            x1, y1 = tr * (c0 + 6, r0 + 6)
            geoms.append(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
            names.append(next(c["name"] for c in CLASSES if c["id"] == cls))
            look.append(spectra)
    write_raster(folder / "scene.tif", img, tr, "EPSG:32633")
    gpd.GeoDataFrame({"class": names}, geometry=geoms, crs="EPSG:32633").to_file(folder / "labels.gpkg")
    cfg = {
        "name": "designed",
        "seed": 0,
        "rasters": {"paths": ["scene.tif"]},
        "labels": {"path": "labels.gpkg", "field": "class"},
        "classes": CLASSES if signal else CLASSES[:2],
        "patch": {"size": 3},
        "split": {"strategy": "kfold", "random_contrast": False},
        "models": {"decision_tree": {}, "max_likelihood": {}},
        "mapping": {"window_size": 64, "workers": 1},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return folder / "config.yaml"


def _run(cfg: Path, out: Path, run_id: str) -> Path:
    from pipeline.cli.main import main

    assert main(["run", str(cfg), "--out", str(out), "--run-id", run_id, "--no-progress", "--engine", "local"]) == 0
    return out / run_id


def _linearised(values: np.ndarray, units: np.ndarray) -> tuple[float, float]:
    """Cluster-robust 95% interval of a mean over pixels (the ratio estimator, linearised)."""
    _, u = np.unique(units, return_inverse=True)
    m = np.bincount(u).astype(float)
    mean = values.mean()
    s = np.bincount(u, weights=values.astype(float)) - mean * m
    se = np.sqrt(m.size / (m.size - 1) * (s**2).sum()) / values.size
    return mean - 1.96 * se, mean + 1.96 * se


@pytest.fixture(scope="module")
def designed_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("designed")
    return _run(designed_scene(root / "scene"), root / "runs", "designed")


def test_designed_accuracy_and_its_group_level_interval(designed_run):
    run = designed_run
    m = json.loads((run / "metrics.json").read_text())
    samples = pd.read_parquet(run / "samples.parquet")
    ev = m["evidence"]
    # the single bare polygon (cut into sub-blocks to reach train and test) is not assessable;
    # the other three classes rank the models
    assert ev["conclusive"] and ev["not_assessable"] == {"bare": "tested on 1 polygon only"}
    assert ev["assessable_classes"] == ["water", "forest", "urban"]
    for name in ("decision_tree", "max_likelihood"):
        e = pd.read_parquet(run / "eval" / f"{name}.parquet")
        keep = e["y_true"].to_numpy() != 4
        ok = (e["y_true"] == e["y_pred"]).to_numpy()[keep]
        rk = m["models"][name]["ranking"]
        assert rk["overall_accuracy"] == pytest.approx(ok.mean())
        # designed: most of the forest-looking urban polygons are lost (they teach the models that a
        # third of forest spectra is urban), the rest found
        look_forest = _forest_looking_urban(run, samples, e)[keep]
        assert ok[~look_forest].mean() > 0.8 and ok[look_forest].mean() < 0.5
        # the interval over blocks, against the linearised cluster-robust interval of the same pixels
        lo, hi = _linearised(ok, e["block"].to_numpy()[keep])
        assert rk["ci95"]["overall_accuracy"] == pytest.approx([lo, hi], abs=0.02)
        assert rk["units"] == len(np.unique(e["block"].to_numpy()[keep])) >= 10


def _forest_looking_urban(run: Path, samples: pd.DataFrame, e: pd.DataFrame) -> np.ndarray:
    """Per eval row: the sample lies in an urban polygon with forest spectra (every other urban one)."""
    labels = gpd.read_file(run.parent.parent / "scene" / "labels.gpkg")
    urban_rows = np.flatnonzero(labels["class"].to_numpy() == "urban")
    forest_looking = set(urban_rows[1::2].tolist())
    return np.isin(samples["group"].to_numpy()[e["sample"].to_numpy()], list(forest_looking))


def test_paired_test_against_the_clustered_mcnemar_test(designed_run):
    run = designed_run
    m = json.loads((run / "metrics.json").read_text())
    e = {k: pd.read_parquet(run / "eval" / f"{k}.parquet") for k in ("decision_tree", "max_likelihood")}
    a, b = e["decision_tree"], e["max_likelihood"]
    assert (a[["fold", "sample"]].to_numpy() == b[["fold", "sample"]].to_numpy()).all()
    keep = a["y_true"].to_numpy() != 4
    ok_a = (a["y_true"] == a["y_pred"]).to_numpy()[keep]
    ok_b = (b["y_true"] == b["y_pred"]).to_numpy()[keep]
    _, u = np.unique(a["block"].to_numpy()[keep], return_inverse=True)
    d = np.bincount(u, weights=(ok_a & ~ok_b).astype(float)) - np.bincount(u, weights=(~ok_a & ok_b).astype(float))
    (pair,) = m["pairwise"]
    oa = pair["overall_accuracy"]
    assert oa["difference"] == pytest.approx(ok_a.mean() - ok_b.mean())
    lo, hi = _linearised(ok_a.astype(float) - ok_b, u)
    assert oa["ci95"] == pytest.approx([lo, hi], abs=0.02)
    if (d**2).sum() > 0:  # Durkalski et al. (2003): X^2 = (sum d_k)^2 / sum d_k^2 over blocks
        p_ref = float(stats.chi2.sf(d.sum() ** 2 / (d**2).sum(), 1))
        assert oa["p_value"] == pytest.approx(p_ref, abs=0.1) or (oa["p_value"] < 0.01 and p_ref < 0.01)
    assert m["statistics"]["unit"] == "block" and m["statistics"]["correction"].startswith("Holm")
    # the report: the pairwise table with the adjusted p, the no-skill rows, the class left out
    md = (run / "report.md").read_text()
    head = md.split("\n\n")[1]
    assert (
        "Ranked on 3 assessable classes" in head and "left out of the ranking: bare (tested on 1 polygon only)" in head
    )
    assert "| no-skill: majority" in md and "| no-skill: stratified random |" in md
    assert "### Pairwise comparisons" in md and "McNemar" not in md


def test_a_model_without_skill_is_flagged_in_the_headline(tmp_path, capsys):
    run = _run(designed_scene(tmp_path / "scene", signal=False), tmp_path / "runs", "noskill")
    m = json.loads((run / "metrics.json").read_text())
    base = m["baselines"]["majority"]
    assert base["classes_per_fold"] == ["forest"] * len(base["classes_per_fold"])
    e = pd.read_parquet(run / "eval" / "decision_tree.parquet")
    assert base["overall_accuracy"] == pytest.approx(np.mean(e["y_true"].to_numpy() == 2))  # the constant map
    flagged = [k for k, r in m["models"].items() if not r["vs_baselines"]["majority"]["significantly_better"]]
    assert flagged  # pure noise: no model is significantly better than a constant map
    for k in flagged:
        r = m["models"][k]["vs_baselines"]["majority"]
        diff = m["models"][k]["ranking"]["overall_accuracy"] - base["ranking"]["overall_accuracy"]
        assert r["difference"] == pytest.approx(diff)
    head = (run / "report.md").read_text().split("\n\n")[1]
    below = [k for k in flagged if m["models"][k]["vs_baselines"]["majority"]["beats"] is False]
    if below:
        no_skill = head[head.index("No skill: ") :].split("(")[0]
        assert all(k in no_skill for k in below)
    unproven = [k for k in flagged if k not in below]
    if unproven:
        assert "not significantly better than a no-skill baseline" in head
    assert "no skill" in capsys.readouterr().out.lower() or not below

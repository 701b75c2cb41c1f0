"""scikit-learn's ``GroupKFold`` + ``cross_val_predict`` reproduces the pipeline's pooled
out-of-fold accuracy for the random forest (issue #26, "Done when").

The pipeline runs spatial k-fold cross-validation end to end (GeoTIFF, GeoPackage polygons, the
CLI). The test then rebuilds the same evaluation from scratch: features read from the raster with
rasterio at the samples' rows and columns (not from the pipeline's patch store), groups = the fold
in which folds.json tests each sample, scikit-learn's own ``RandomForestClassifier`` with the
config's settings, and ``cross_val_predict`` over ``GroupKFold``. The design makes the two
comparable: patch 1 x 1 (the features are the pixel's bands), no validation share, polygons farther
apart than the buffer (so every fold trains on every sample it does not test, as GroupKFold does),
which the test checks before comparing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from rasterio.transform import from_origin

sys.path.insert(0, str(Path(__file__).parent))
from unseen_scenes import class_image, polygons_on_cells, spectra, write_config, write_raster  # noqa: E402

pytestmark = pytest.mark.e2e

K = 4
FOREST = {"n_estimators": 25, "min_samples_leaf": 2, "n_jobs": 1, "features": {"indices": [], "patch_stats": False}}


def test_group_kfold_and_cross_val_predict_reproduce_the_pooled_accuracy(tmp_path):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import GroupKFold, cross_val_predict

    from pipeline.cli.main import main

    folder = tmp_path / "scene"
    folder.mkdir()
    cls = class_image(96, 96)
    transform = from_origin(500000.0, 4000000.0, 30.0, 30.0)
    # noisy spectra: the classes overlap, so the forest errs and the accuracy means something
    write_raster(folder / "scene.tif", spectra(cls, 4, seed=3, noise=450.0), transform, "EPSG:32633")
    polygons_on_cells(cls, transform, "EPSG:32633").to_file(folder / "labels.gpkg")
    split = {"strategy": "kfold", "k": K, "random_contrast": False}
    split["fractions"] = {"train": 0.85, "validation": 0.0, "test": 0.15}
    cfg = write_config(
        folder / "config.yaml", ["scene.tif"], "labels.gpkg", {"random_forest": FOREST}, patch={"size": 1}, split=split
    )
    assert (
        main(["run", str(cfg), "--out", str(tmp_path / "runs"), "--run-id", "cv", "--engine", "local", "--no-progress"])
        == 0
    )
    run = tmp_path / "runs" / "cv"
    samples = pd.read_parquet(run / "samples.parquet")
    folds = json.loads((run / "folds.json").read_text())
    n = len(samples)
    assert len(folds) == K

    # every sample is tested once, and each fold trains on all the others (no validation, nothing buffered)
    fold_of = np.full(n, -1)
    for i, f in enumerate(folds):
        assert f["validation"] == []
        assert sorted(f["train"] + f["test"]) == list(range(n))
        fold_of[f["test"]] = i
    assert (fold_of >= 0).all()

    # features independently: the raster's bands at each sample's pixel
    with rasterio.open(folder / "scene.tif") as src:
        img = src.read()
    X = img[:, samples["row"].to_numpy(), samples["col"].to_numpy()].T.astype(np.float32)
    y = samples["class_id"].to_numpy()

    cv = GroupKFold(n_splits=K)
    tests = sorted(sorted(te.tolist()) for _, te in cv.split(X, y, groups=fold_of))
    assert tests == sorted(sorted(f["test"]) for f in folds)  # the same k test sets
    seed = yaml.safe_load((run / "config.yaml").read_text())["seed"]
    forest = RandomForestClassifier(n_estimators=25, min_samples_leaf=2, n_jobs=1, random_state=seed)
    pred = cross_val_predict(forest, X, y, groups=fold_of, cv=cv)
    oa_sklearn = float(np.mean(pred == y))

    metrics = json.loads((run / "metrics.json").read_text())
    oa_pipeline = metrics["models"]["random_forest"]["overall_accuracy"]
    assert metrics["split"]["strategy"] == "kfold" and metrics["models"]["random_forest"]["evaluated"]["folds"] == K
    assert oa_pipeline == pytest.approx(oa_sklearn, abs=1e-12)
    # and sample by sample: the pooled out-of-fold predictions are scikit-learn's
    ev = pd.read_parquet(run / "eval" / "random_forest.parquet")
    assert len(ev) == n and sorted(ev["sample"]) == list(range(n))
    np.testing.assert_array_equal(ev.sort_values("sample")["y_pred"].to_numpy(), pred)
    np.testing.assert_array_equal(ev.sort_values("sample")["fold"].to_numpy(), fold_of)
    assert 0.2 < oa_sklearn < 1.0  # a real test: neither trivial nor perfect

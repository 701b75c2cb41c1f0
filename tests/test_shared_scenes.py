"""Integration: the whole pipeline on the three real scenes in ../shared/data (skipped without it)."""

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from pipeline.cli.main import main

REPO = Path(__file__).resolve().parents[1]
# Every model, small: what is checked here (audit, map grids, class ids, accuracy = trace of the
# confusion matrix, label bookkeeping) holds for any fitted model, however rough.
MODELS = "decision_tree,random_forest,svm,max_likelihood,cnn,resnet"
FAST = [
    "--set",
    "models.cnn.epochs=2",
    "--set",
    "models.resnet.epochs=2",
    "--set",
    "models.cnn.channels=8",
    "--set",
    "models.resnet.channels=8",
    "--set",
    "models.random_forest.n_estimators=10",
    "--set",
    "models.svm.C=[10]",
    # 3 folds, not the default 5: every check here holds for any number of folds, and each model
    # is fitted 5 times instead of 7 (the three scenes were the suite's slowest tests)
    "--set",
    "split.k=3",
]


def _run(tmp_path, config, models=MODELS):
    out = tmp_path / "runs"
    code = main(
        [
            "run",
            str(REPO / "configs" / config),
            "--out",
            str(out),
            "--run-id",
            "r",
            "--models",
            models,
            "--no-progress",
            "--device",
            "cpu",
            *FAST,
        ]
    )
    assert code == 0
    return out / "r"


def _check_common(run: Path, first_raster: Path, models: list[str]) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    audit = m["split"]["audit"]
    assert audit["train_patches_touching_test_pixels"] == 0 and audit["test_patches_touching_train_pixels"] == 0
    assert set(m["models"]) == set(models) and set(m["random_split_contrast"]) == set(models)
    with rasterio.open(first_raster) as src:
        for model in models:
            with rasterio.open(run / "maps" / f"{model}.tif") as mp:
                assert (mp.crs, mp.transform, mp.shape) == (src.crs, src.transform, src.shape)
                ids = set(np.unique(mp.read(1))) - {255}
                assert ids <= {c["id"] for c in m["classes"]}
            cm = np.array(m["models"][model]["confusion_matrix"]["matrix"])
            assert np.isclose(m["models"][model]["overall_accuracy"], np.trace(cm) / cm.sum())
    return m


@pytest.mark.slow
def test_landsat7_multiband_with_inconsistent_attribute_table(tmp_path, shared_data):
    run = _run(tmp_path, "landsat7_ceholden.yaml")
    m = _check_common(run, shared_data / "landsat7_ceholden" / "LE70220491999322EDC01_stack.gtif", MODELS.split(","))
    lab = m["labels"]
    # Rows 6 (class barren, id 5) and 8 (class urban, id 4) disagree: reported, dropped.
    assert lab["id_name_mismatches"] == 2
    assert sorted(e["row"] for e in lab["mismatch_examples"]) == [6, 8]
    assert lab["band_names"] == ["blue", "green", "red", "nir", "swir1", "swir2"]


@pytest.mark.slow
def test_landsat5_single_band_files_stacked(tmp_path, shared_data):
    run = _run(tmp_path, "landsat5_rstoolbox.yaml")
    folder = shared_data / "landsat5_rstoolbox"
    m = _check_common(run, folder / "LT52240631988227CUB02_B1.TIF", MODELS.split(","))
    assert m["labels"]["features_used"] == 36
    # The stacked files equal the multi-band stack shipped beside them (bands 1-5 and 7).
    from rasterio.windows import Window

    from pipeline.inputs.raster import RasterStack

    singles = [folder / f"LT52240631988227CUB02_B{b}.TIF" for b in (1, 2, 3, 4, 5, 7)]
    with RasterStack.open(singles) as a, RasterStack.open(folder / "lsat_stack.tif", bands=[1, 2, 3, 4, 5, 7]) as b:
        w = Window(0, 0, a.grid.width, a.grid.height)
        np.testing.assert_array_equal(a.read(w), b.read(w))


@pytest.mark.slow
def test_sentinel2_label_raster(tmp_path, shared_data):
    run = _run(tmp_path, "sentinel2_eolearn.yaml")
    m = _check_common(run, shared_data / "sentinel2_eolearn" / "s2l1c_ref0.tif", MODELS.split(","))
    lab = m["labels"]
    assert lab["kind"] == "raster"
    with rasterio.open(shared_data / "sentinel2_eolearn" / "lulc.tif") as src:
        ref = src.read(1)
    # Class 1 is not in the config's class table: its pixels are dropped and counted.
    assert lab["unknown_labels"] == {"1": int((ref == 1).sum())}
    for cid, name in ((2, "forest"), (3, "grassland"), (4, "shrubland"), (8, "artificial")):
        assert lab["pixels_per_class"][name] == int((ref == cid).sum())

"""Per-polygon accuracy over all models and the reference polygons every model contradicts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.evaluation.reference_polygons import polygon_accuracy, reference_check

NAMES = {1: "water", 2: "forest"}


def _samples():
    # polygon 0: water, 4 test px; polygon 1: forest, 2 test px; polygon 2: water, training only
    return pd.DataFrame(
        {
            "x": [0.0, 1, 2, 3, 10, 11, 20, 21, 22, 23],
            "y": [0.0] * 10,
            "class_id": [1, 1, 1, 1, 2, 2, 1, 1, 2, 2],
            "class_name": ["water"] * 4 + ["forest"] * 2 + ["water"] * 2 + ["forest"] * 2,
            "group": [0, 0, 0, 0, 1, 1, 2, 2, 3, 3],
            "split": ["test"] * 6 + ["train"] * 4,
        }
    )


def _evals():
    return {
        "a": pd.DataFrame({"sample": [0, 1, 2, 3, 4, 5], "y_pred": [2, 2, 2, 1, 2, 2]}),
        "b": pd.DataFrame({"sample": [0, 1, 2, 3, 4, 5], "y_pred": [2, 2, 1, 1, 2, 1]}),
    }


def test_polygon_accuracy_by_hand():
    t = polygon_accuracy(_samples(), _evals(), NAMES)
    assert t["group"].tolist() == [0, 1]  # worst first
    water, forest = t.iloc[0], t.iloc[1]
    assert (water["a"], water["b"], water["pixels"]) == (0.25, 0.5, 4)
    assert water["mean_accuracy"] == pytest.approx(0.375) and water["x"] == pytest.approx(1.5)
    assert water["predicted_as"] == "forest"  # 5 of 8 predictions
    assert not water["contradicted"]  # model b gets half of it: not below 0.5
    assert (forest["a"], forest["b"], forest["contradicted"]) == (1.0, 0.5, False)
    ev = _evals()
    ev["b"].loc[2, "y_pred"] = 2  # now b gets 1 of 4 water pixels: every model contradicts polygon 0
    assert polygon_accuracy(_samples(), ev, NAMES)["contradicted"].tolist() == [True, False]


def test_reference_check_compares_suspect_spectra_with_training():
    ev = _evals()
    ev["b"].loc[2, "y_pred"] = 2
    # patches (n, bands=2, 3, 3): centre pixels carry the values; the ring is noise that must not count
    centre = np.array(
        [[40, 80], [40, 80], [40, 80], [40, 80], [50, 50], [50, 50], [10, 20], [12, 24], [60, 60], [60, 60]], np.float32
    )
    patches = np.random.default_rng(0).random((10, 2, 3, 3)).astype(np.float32) * 1000
    patches[:, :, 1, 1] = centre
    out = reference_check(_samples(), ev, NAMES, patches, ["nir", "swir1"])
    json.dumps(out, allow_nan=False)
    assert [p["group"] for p in out["polygons"]] == [0, 1]
    assert out["polygons"][0]["accuracy"] == {"a": 0.25, "b": 0.25} and out["polygons"][0]["contradicted"]
    (s,) = out["suspects"]
    assert (s["group"], s["class_name"], s["predicted_as"], s["pixels"]) == (0, "water", "forest", 4)
    assert s["polygon"]["mean"] == [40.0, 80.0]
    assert s["class_training"]["mean"] == [11.0, 22.0] and s["class_training"]["pixels"] == 2
    assert s["predicted_training"]["mean"] == [60.0, 60.0]
    assert s["ratio"] == pytest.approx([40 / 11, 80 / 22])


def test_kfold_suspect_spectra_compare_with_the_training_pixels_of_the_fold_that_tested_it():
    # k-fold: samples.parquet's split is fold 0's, where polygon 0 (tested in fold 1) is training data;
    # its spectrum must be set against fold 1's training pixels, never against itself
    samples = _samples().assign(split=["train"] * 4 + ["test"] * 2 + ["train"] * 4)
    ev = {m: e.assign(fold=[1, 1, 1, 1, 0, 0]) for m, e in _evals().items()}
    ev["b"].loc[2, "y_pred"] = 2
    centre = np.array(
        [[40, 80], [40, 80], [40, 80], [40, 80], [50, 50], [50, 50], [10, 20], [12, 24], [60, 60], [60, 60]], np.float32
    )
    patches = np.zeros((10, 2, 3, 3), np.float32)
    patches[:, :, 1, 1] = centre
    train_folds = [np.array([0, 1, 2, 3, 8, 9]), np.array([6, 7, 8, 9])]
    (s,) = reference_check(samples, ev, NAMES, patches, ["nir", "swir1"], train_folds)["suspects"]
    assert s["group"] == 0 and s["class_training"]["pixels"] == 2 and s["class_training"]["mean"] == [11.0, 22.0]
    assert s["ratio"] == pytest.approx([40 / 11, 80 / 22])
    # a polygon cut into sub-blocks tested in folds 1 and 2: the water pixels both folds trained on
    for e in ev.values():
        e["fold"] = [1, 1, 2, 2, 0, 0]
    train_folds.append(np.array([0, 1, 6, 8, 9]))
    train_folds[1] = np.array([2, 3, 6, 7, 8, 9])
    (s,) = reference_check(samples, ev, NAMES, patches, ["nir", "swir1"], train_folds)["suspects"]
    assert s["pixels"] == 4 and s["class_training"]["pixels"] == 1 and s["class_training"]["mean"] == [10.0, 20.0]


def test_spectra_figure_of_a_60_band_suspect_keeps_band_ticks_legible(tmp_path, monkeypatch):
    # A 60-band suspect once got 60 overlapping tick labels (an unreadable bar under the plot).
    from matplotlib.figure import Figure

    from pipeline.report import figures

    bands = [f"band_{i + 1}" for i in range(60)]
    pos, names = figures._band_ticks(bands)
    assert len(pos) <= 10 and pos[0] == 0 and names == [bands[i] for i in pos]
    assert all(b - a == pos[1] - pos[0] for a, b in zip(pos, pos[1:]))  # evenly spaced
    assert figures._band_ticks(bands[:4]) == ([0, 1, 2, 3], bands[:4])  # few bands: all named

    ev = _evals()
    ev["b"].loc[2, "y_pred"] = 2
    rng = np.random.default_rng(1)
    patches = rng.random((10, 60, 3, 3)).astype(np.float32) * 100
    out = reference_check(_samples(), ev, NAMES, patches, bands)
    seen = {}
    save = figures._save_fig

    def keep(fig: Figure, path):
        seen["labels"] = [t.get_text() for t in fig.axes[0].get_xticklabels()]
        return save(fig, path)

    monkeypatch.setattr(figures, "_save_fig", keep)
    png = figures.spectra_figure(out["suspects"], {"water": "#2166ac", "forest": "#1b7837"}, tmp_path / "s.png")
    assert png is not None and png.is_file() and png.stat().st_size > 0
    assert seen["labels"] == names

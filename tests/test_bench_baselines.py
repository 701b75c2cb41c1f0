"""The baselines benchmark runs end to end at a tiny size and writes every key."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.baselines import MODELS, main


def test_bench_baselines_tiny(tmp_path, capsys):
    out = tmp_path / "bench" / "baselines.json"
    rc = main(
        [
            "--size",
            "256",
            "--out",
            str(out),
            "--sk-pixels",
            "3000",
            "--svm-train",
            "400",
            "--n-train",
            "1500",
            "--rf-trees",
            "5",
            "--window-size",
            "128",
            "--workdir",
            str(tmp_path),
            "--repeats",
            "2",
        ]
    )
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["size"] == 256 and report["bands"] == 6
    assert report["io_floor_mpx_per_s"] > 0 and report["io_floor_peak_rss_mb"] > 0
    assert set(report["models"]) == set(MODELS)
    for name, r in report["models"].items():
        assert r["mpx_per_s"] > 0 and r["peak_rss_mb"] > 0, name
        assert "fit_info" in r and r["fit_info"]["n_train"] > 0
    svm = report["models"]["svm"]
    for key in (
        "speedup_vs_sklearn",
        "label_agreement",
        "sklearn_mpx_per_s",
        "fast_mpx_per_s",
        "n_pixels_compared",
        "n_support_vectors",
        "map_speedup_vs_sklearn",
    ):
        assert key in svm, key
    assert svm["n_pixels_compared"] == 3000
    assert svm["label_agreement"] >= 0.999
    assert "| svm |" in capsys.readouterr().out
    # scikit-learn and the fast path timed in interleaved pairs; the speed-up is the median of the pairs'
    assert svm["repeats"] == 2 and len(svm["sklearn_seconds_all"]) == len(svm["fast_seconds_all"]) == 2
    assert svm["speedup_vs_sklearn"] == pytest.approx(
        float(np.median([a / b for a, b in zip(svm["sklearn_seconds_all"], svm["fast_seconds_all"])]))
    )
    # the tree models against scikit-learn on the same pixels: identical labels, and the I/O floor ratio
    for name in ("random_forest", "gradient_boosting", "decision_tree"):
        r = report["models"][name]
        assert r["n_pixels_compared"] == 3000 and r["repeats"] == 2, name
        assert r["label_agreement"] == 1.0 and r["n_label_differences"] == 0, name
        assert r["speedup_vs_sklearn"] == pytest.approx(float(np.median(r["speedup_per_repeat"])))
        assert r["seconds_over_io_floor"] == pytest.approx(r["seconds"] / report["io_floor_seconds"])
    assert report["models"]["random_forest"]["trees"] == 5
    assert report["models"]["random_forest"]["max_confidence_diff"] <= 1e-12
    gb = report["models"]["gradient_boosting"]
    assert gb["reference"] == "lightgbm.Booster.predict" and gb["max_confidence_diff"] <= 1e-6
    assert gb["map_speedup_vs_random_forest"] == pytest.approx(
        report["models"]["random_forest"]["seconds"] / gb["seconds"]
    )
    assert len(report["machine"]["load_average_before"]) == 3
    assert report["io_floor_map_mpx_per_s"] > 0
    dt = report["models"]["decision_tree"]
    assert dt["seconds_over_io_floor_map"] == pytest.approx(dt["seconds"] / report["io_floor_map_seconds"])

"""The baselines benchmark runs end to end at a tiny size and writes every key."""

from __future__ import annotations

import json

from bench.baselines import MODELS, main


def test_bench_baselines_tiny(tmp_path, capsys):
    out = tmp_path / "bench" / "baselines.json"
    rc = main(["--size", "256", "--out", str(out), "--sk-pixels", "3000", "--svm-train", "400", "--n-train", "1500",
               "--rf-trees", "5", "--window-size", "128", "--workdir", str(tmp_path)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["size"] == 256 and report["bands"] == 6
    assert report["io_floor_mpx_per_s"] > 0 and report["io_floor_peak_rss_mb"] > 0
    assert set(report["models"]) == set(MODELS)
    for name, r in report["models"].items():
        assert r["mpx_per_s"] > 0 and r["peak_rss_mb"] > 0, name
        assert "fit_info" in r and r["fit_info"]["n_train"] > 0
    svm = report["models"]["svm"]
    for key in ("speedup_vs_sklearn", "label_agreement", "sklearn_mpx_per_s", "fast_mpx_per_s", "n_pixels_compared",
                "n_support_vectors", "map_speedup_vs_sklearn"):
        assert key in svm, key
    assert svm["n_pixels_compared"] == 3000
    assert svm["label_agreement"] >= 0.999
    assert "| svm |" in capsys.readouterr().out

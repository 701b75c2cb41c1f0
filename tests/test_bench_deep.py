"""The dense-vs-per-patch benchmark runs end to end at a tiny size and writes its report."""

from __future__ import annotations

import json

import pytest
import torch

from bench.deep import main, run_bench

KEYS = {"dense_mpx_per_s", "patch_mpx_per_s", "dense_speedup", "max_logit_diff", "train_samples_per_s"}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_run_bench_writes_report(tmp_path):
    out = tmp_path / "bench" / "deep.json"
    rep = run_bench(
        out,
        size=40,
        patch_size=7,
        bands=4,
        channels=8,
        classes=3,
        window_size=16,
        patch_pixels=300,
        patch_batch=128,
        train_samples=128,
        train_batch=32,
        repeats=2,
        log=None,
    )
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(rep))
    assert set(saved["models"]) == {"cnn", "resnet"}
    for res in saved["models"].values():
        assert KEYS <= set(res)
        assert res["max_logit_diff"] < 1e-4 and res["label_agreement"] == 1.0
        assert res["dense_mpx_per_s"] > 0 and res["patch_mpx_per_s"] > 0 and res["train_samples_per_s"] > 0
        assert res["dense_speedup"] == pytest.approx(res["dense_mpx_per_s"] / res["patch_mpx_per_s"])
        assert res["conv_layers"] == 3 and len(res["dense_seconds_all"]) == 2
        assert res["mac_ratio"] > 1
        # Per-layer diagnostics: one row per convolution (trunk + head), shares add up, and the
        # per-patch pass did exactly the work conv_macs predicts per pixel.
        layers = res["layers"]
        assert len(layers) >= res["conv_layers"] + 1 and layers[-1]["layer"] == "head"
        for mode in ("dense", "patch"):
            assert sum(r[f"{mode}_time_share"] for r in layers) == pytest.approx(1.0)
            assert all(r[f"{mode}_gflops"] > 0 for r in layers)
        assert sum(r["patch_macs"] for r in layers) == res["patch_pixels"] * res["macs_per_pixel_patch"]
        # Dense mode did at least one evaluation per output pixel per layer, plus the halo overlap.
        assert sum(r["dense_macs"] for r in layers) >= res["dense_pixels"] * res["macs_per_pixel_dense"]
        for mode in ("dense", "patch"):  # the aggregate is total work over total time
            seconds = sum(2 * r[f"{mode}_macs"] / (r[f"{mode}_gflops"] * 1e9) for r in layers)
            assert res[f"{mode}_conv_gflops"] == pytest.approx(
                2 * sum(r[f"{mode}_macs"] for r in layers) / seconds / 1e9
            )
            assert (
                min(r[f"{mode}_gflops"] for r in layers)
                <= res[f"{mode}_conv_gflops"]
                <= max(r[f"{mode}_gflops"] for r in layers)
            )
        assert len(res["dense_speedup_per_repeat"]) == 2
        assert res["dense_speedup_per_repeat"][0] == pytest.approx(
            (res["dense_pixels"] / res["dense_seconds_all"][0]) / (res["patch_pixels"] / res["patch_seconds_all"][0])
        )
        assert res["dense_speedup_median"] == pytest.approx(sum(res["dense_speedup_per_repeat"]) / 2)
        assert res["naive_patch_mpx_per_s"] > 0
        assert res["dense_speedup_vs_naive_patch"] == pytest.approx(
            res["dense_mpx_per_s"] / res["naive_patch_mpx_per_s"]
        )
    assert {"cpu_count", "torch", "platform"} <= set(saved["machine"])
    assert saved["params"]["patch_size"] == 7


def test_main_cli(tmp_path, capsys):
    out = tmp_path / "d.json"
    assert (
        main(
            [
                "--size",
                "24",
                "--patch-size",
                "5",
                "--channels",
                "8",
                "--patch-pixels",
                "64",
                "--models",
                "cnn",
                "--repeats",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert set(json.loads(out.read_text())["models"]) == {"cnn"}
    assert "speed-up" in capsys.readouterr().out
    assert main(["--patch-size", "4", "--out", str(out)]) == 2
    assert main(["--models", "svm", "--out", str(out)]) == 2
    assert main(["--device", "cuda", "--size", "16", "--out", str(tmp_path / "e.json")]) == (
        0 if torch.cuda.is_available() else 2
    )

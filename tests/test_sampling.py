"""Sampling of dense labels: caps per class and split, balance across blocks, audit after sampling."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.cli.main import main
from pipeline.sampling.dense import balanced_take, caps, decide, thin_mask, thinning_strides
from pipeline.sampling.settings import SamplingConfig
from pipeline.split.settings import SplitConfig
from tests.conftest import write_raster


def test_balanced_take_shares_the_cap_evenly_across_blocks():
    rng = np.random.default_rng(0)
    blocks = np.repeat([7, 3, 9, 4], [5, 100, 40, 1000])
    pos = balanced_take(blocks, 150, rng)
    assert len(pos) == 150 and len(np.unique(pos)) == 150 and np.all(np.diff(pos) > 0)
    got = {b: int(np.sum(blocks[pos] == b)) for b in (7, 3, 9, 4)}
    # 150 over 4 blocks: blocks 7 and 9 give all they have (5, 40), the other two share 105.
    assert got[7] == 5 and got[9] == 40 and sorted(got[b] for b in (3, 4)) == [52, 53]
    assert len(balanced_take(blocks, 5000, rng)) == len(blocks)  # below the cap: everything
    # Within a block the draw is spread, not the first rows.
    pos4 = pos[blocks[pos] == 4] - 145
    assert pos4.max() > 500 and pos4.min() < 500


def test_thinning_only_for_classes_above_the_budget():
    strides = thinning_strides({1: 50, 2: 10 * 100 * 9 + 1}, max_per_class=100)
    assert strides == {1: 1, 2: 4}
    rows, cols = np.divmod(np.arange(40 * 40), 40)
    cls = np.where(cols < 20, 1, 2)
    keep = thin_mask(rows, cols, cls, {1: 1, 2: 4})
    assert keep[cls == 1].all()
    assert keep[cls == 2].sum() == 10 * 5 and np.all(rows[keep & (cls == 2)] % 4 == 0)


def test_caps_and_decision():
    c = caps(SamplingConfig(max_per_class=700), SplitConfig(strategy="blocks"))
    assert c == {"train": 700, "validation": 150, "test": 150}
    assert caps(SamplingConfig(max_per_class=100), SplitConfig(strategy="kfold", k=5)) == {"fold": 25}
    assert decide(SamplingConfig(), 10, 1000)[0] is False
    assert decide(SamplingConfig(), 1_000_001, 10)[0] is True
    assert decide(SamplingConfig(), 5000, 2**20)[0] is True  # 5 GB of patches
    assert decide(SamplingConfig(mode="off"), 10**8, 10)[0] is False
    assert decide(SamplingConfig(mode="on"), 10, 10)[0] is True


@pytest.fixture(scope="module")
def dense_scene(tmp_path_factory):
    """A 3-band 90 x 120 uint16 scene fully labelled by a dense label raster of three classes."""
    tmp = tmp_path_factory.mktemp("dense")
    rng = np.random.default_rng(1)
    rows, cols = np.mgrid[0:90, 0:120]
    lab = np.where(cols < 40, 1, np.where(rows < 45, 2, 3)).astype(np.uint8)
    lab[(rows - 60) ** 2 + (cols - 20) ** 2 < 100] = 3  # a patch of class 3 inside class 1
    img = (1000 + 50 * rng.normal(size=(3, 90, 120))).astype(np.uint16)
    for c in (1, 2, 3):
        img[c - 1][lab == c] += 300
    write_raster(tmp / "img.tif", img, nodata=0)
    write_raster(tmp / "lab.tif", lab, nodata=0)
    return tmp, lab


def _config(folder, **sampling):
    cfg = {
        "name": "dense",
        "rasters": {"paths": ["img.tif"]},
        "labels": {"path": "lab.tif"},
        "classes": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}],
        "patch": {"size": 3},
        "split": {"strategy": "blocks", "block_size": 150.0},
        "models": {"decision_tree": {}},
        "sampling": sampling,
    }
    path = folder / f"cfg-{len(list(folder.glob('cfg-*')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def runs(dense_scene, tmp_path_factory):
    """The dense scene run with sampling off and with sampling switched on by the auto rule."""
    import logging

    folder, _ = dense_scene
    out = tmp_path_factory.mktemp("runs")
    off = _config(folder, mode="off", auto_above_pixels=5000)
    assert main(["run", str(off), "--out", str(out), "--run-id", "off", "--no-progress"]) == 0
    lines: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    h = Grab(level=logging.WARNING)
    logging.getLogger("pipeline").addHandler(h)
    try:
        cfg = _config(folder, mode="auto", max_per_class=400, auto_above_pixels=5000)  # no class above 10 x 400
        assert main(["run", str(cfg), "--out", str(out), "--run-id", "s", "--no-progress"]) == 0
    finally:
        logging.getLogger("pipeline").removeHandler(h)
    return out / "off", out / "s", lines


def test_dense_labels_are_sampled_after_the_split(dense_scene, runs):
    _, lab = dense_scene
    run_off, run, lines = runs
    line = [m for m in lines if m.startswith("sampling:")]
    assert len(line) == 1 and "10,800 labelled pixels" in line[0] and "auto_above_pixels" in line[0]
    assert "lattice" not in line[0]
    samples = pd.read_parquet(run / "samples.parquet")
    cap = {"train": 400, "validation": int(np.ceil(400 * 0.15 / 0.7)), "test": int(np.ceil(400 * 0.15 / 0.7))}
    n = samples.groupby(["split", "class_name"]).size()
    for (split, _), v in n.items():
        assert v <= cap[split]
    assert set(samples["split"]) == {"train", "validation", "test"}  # the buffer's exclusions are dropped
    assert n["train"].max() == 400  # classes with plenty of pixels reach the cap in training
    labels = json.loads((run / "labels.json").read_text())
    rec = labels["sampling"]
    assert rec["active"] and rec["labelled_per_class"] == {
        "a": int((lab == 1).sum()),
        "b": int((lab == 2).sum()),
        "c": int((lab == 3).sum()),
    }
    assert labels["pixels_per_class"] == rec["labelled_per_class"]  # the full labelled area still counts
    assert sum(rec["split_counts_after"][s][c] for s in rec["split_counts_after"] for c in "abc") == len(samples)
    before = rec["split_counts_before"]
    for s in ("train", "validation", "test"):
        for c in "abc":
            assert rec["split_counts_after"][s][c] == min(before[s][c], cap[s])


def test_sampling_keeps_the_split_and_balances_blocks(runs):
    """No thinning here (few pixels), so the split is the one of the unsampled run: sampling only
    draws from it. Per class and split, every block keeps samples, and blocks that were not
    exhausted get equal shares (within one)."""
    run_off, run, _ = runs
    full = pd.read_parquet(run_off / "samples.parquet")
    samp = pd.read_parquet(run / "samples.parquet")
    key = ["row", "col"]
    merged = samp.merge(full[key + ["split", "block"]], on=key, suffixes=("", "_full"))
    assert len(merged) == len(samp)
    assert (merged["split"] == merged["split_full"]).all() and (merged["block"] == merged["block_full"]).all()
    for (split, c), grp in samp.groupby(["split", "class_name"]):
        had = full[(full["split"] == split) & (full["class_name"] == c)].groupby("block").size()
        got = grp.groupby("block").size().reindex(had.index, fill_value=0)
        assert (got > 0).all()  # every block of the split keeps the class
        short = got < had  # blocks that gave only part of what they had
        if short.any():
            assert got[short].max() - got[short].min() <= 1
            assert (got[~short] <= got[short].max()).all()


def test_audit_and_metrics_after_sampling(dense_scene, runs):
    _, lab = dense_scene
    _, run, _ = runs
    samples = pd.read_parquet(run / "samples.parquet")
    rec = json.loads((run / "labels.json").read_text())["sampling"]
    # the audit is recomputed on what is used and stays at 0; metrics carry the record
    m = json.loads((run / "metrics.json").read_text())
    audit = m["split"]["audit"]
    assert audit["train_patches_touching_test_pixels"] == 0 and audit["test_patches_touching_train_pixels"] == 0
    assert audit["validation_patches_touching_test_pixels"] == 0
    assert m["split"]["counts"] == rec["split_counts_after"]
    assert m["labels"]["sampling"]["samples_after"] == len(samples)
    # class areas come from the full map, not the sample
    areas = m["models"]["decision_tree"]["class_areas"]
    assert sum(v["pixels"] for v in areas.values()) == lab.size
    report = (run / "report.md").read_text()
    assert "Sampling: 10,800 labelled pixels exceed" in report and "sampled test" in report
    from pipeline.sampling.patches import open_patches

    assert len(open_patches(run / "patches.npy")) == len(samples)


def test_sampling_off_and_kfold_caps(dense_scene, runs, tmp_path):
    folder, lab = dense_scene
    run_off = runs[0]
    samples = pd.read_parquet(run_off / "samples.parquet")
    assert len(samples) == lab.size and not json.loads((run_off / "labels.json").read_text())["sampling"]["active"]
    kf = _config(folder, mode="on", max_per_class=200)
    raw = yaml.safe_load(kf.read_text())
    raw["split"] = {"strategy": "kfold", "k": 3, "block_size": 150.0, "random_contrast": False}
    kf.write_text(yaml.safe_dump(raw))
    assert main(["run", str(kf), "--out", str(tmp_path), "--run-id", "kf", "--no-progress"]) == 0
    s = pd.read_parquet(tmp_path / "kf" / "samples.parquet")
    rec = json.loads((tmp_path / "kf" / "labels.json").read_text())["sampling"]
    assert rec["thinning_stride"] == {"a": 2, "b": 2, "c": 2}  # each class above 10 x 200 pixels
    assert (s["row"] % 2 == 0).all() and (s["col"] % 2 == 0).all()
    assert s.groupby(["fold", "class_name"]).size().max() <= 100  # 200 / (k - 1)
    m = json.loads((tmp_path / "kf" / "metrics.json").read_text())
    assert m["split"]["audit"]["train_patches_touching_test_pixels"] == 0
    folds = json.loads((tmp_path / "kf" / "folds.json").read_text())
    assert len(folds) == 3 and all(max(f["train"] + f["test"]) < len(s) for f in folds)

"""Spatial split engine: leak-freedom, reproducibility, group integrity, stratification, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipeline.core.errors import InputError, LeakageError
from pipeline.split.assign import default_buffer
from pipeline.split.audit import audit_split, check_no_leak
from pipeline.split.make import make_splits
from pipeline.split.outputs import plot_split_map, write_splits_gpkg
from pipeline.split.random import random_split
from pipeline.split.settings import SplitConfig, SplitFractions
from pipeline.split.types import Fold, SplitResult

REPO = Path(__file__).resolve().parents[1]
CLASS_NAMES = ["water", "forest", "urban", "crop", "bare"]


def make_layout(
    seed: int,
    n_groups: int = 40,
    n_classes: int = 3,
    size: int = 300,
    res: tuple[float, float] = (30.0, 30.0),
    max_radius: int = 6,
) -> pd.DataFrame:
    """Random label layout: clusters of pixels (blobs approximating polygons), one group each.

    Classes are dealt round-robin so every class has several groups. Overlapping
    pixels keep the first group.
    """
    rng = np.random.default_rng(seed)
    taken: dict[tuple[int, int], int] = {}
    cls_of = {}
    for g in range(n_groups):
        r0, c0 = rng.integers(0, size, 2)
        rad = int(rng.integers(0, max_radius + 1))
        cls_of[g] = g % n_classes
        for dr in range(-rad, rad + 1):
            for dc in range(-rad, rad + 1):
                if dr * dr + dc * dc <= rad * rad + rng.integers(0, 3):
                    r, c = int(r0 + dr), int(c0 + dc)
                    if 0 <= r < size and 0 <= c < size:
                        taken.setdefault((r, c), g)
    keys = sorted(taken)
    rows = np.array([k[0] for k in keys])
    cols = np.array([k[1] for k in keys])
    groups = np.array([taken[k] for k in keys])
    cid = np.array([cls_of[g] for g in groups]) + 1
    x0, y0 = 500_000.0, 4_000_000.0
    return pd.DataFrame(
        {
            "x": x0 + (cols + 0.5) * res[0],
            "y": y0 - (rows + 0.5) * abs(res[1]),
            "row": rows,
            "col": cols,
            "class_id": cid,
            "class_name": [CLASS_NAMES[c - 1] for c in cid],
            "group": groups,
        }
    )


def xy_of(s: pd.DataFrame) -> np.ndarray:
    return s[["x", "y"]].to_numpy()


# ----------------------------------------------------------------------------- leak-freedom


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n_groups=st.integers(12, 60),
    patch=st.sampled_from([1, 3, 5, 9, 15]),
    res=st.sampled_from([(30.0, 30.0), (10.0, 10.0), (20.0, 5.0), (5.0, 25.0)]),
    block_mult=st.sampled_from([None, 1.0, 1.7, 3.0, 6.0]),
    strategy=st.sampled_from(["blocks", "kfold"]),
)
def test_property_no_leak(seed, n_groups, patch, res, block_mult, strategy):
    s = make_layout(seed, n_groups=n_groups, size=200, res=res)
    h = patch // 2
    block = None if block_mult is None else block_mult * (patch + h + 1) * max(res)
    cfg = SplitConfig(strategy=strategy, block_size=block, k=3)
    try:
        r = make_splits(s, cfg, patch, res, seed=seed)
    except InputError as e:
        assert not isinstance(e, LeakageError), e  # the failure this test is looking for
        assume(False)  # e.g. too few blocks for this random layout
        return
    xy = xy_of(s)
    for f, fold in enumerate(r.folds):
        a = audit_split(xy, res, patch, fold.train, fold.test, fold.validation)
        check_no_leak(a, f"fold {f}")
        # disjoint, and only buffer-excluded samples are missing
        allpos = np.concatenate([fold.train, fold.validation, fold.test])
        assert len(np.unique(allpos)) == len(allpos)
    assert r.report["audit"]["train_patches_touching_test_pixels"] == 0
    assert r.report["audit"]["test_patches_touching_train_pixels"] == 0


def test_random_split_on_clustered_data_is_caught():
    s = make_layout(1, n_groups=30)
    fold = random_split(s, SplitFractions(), seed=0)
    a = audit_split(xy_of(s), (30, 30), 5, fold.train, fold.test, fold.validation)
    assert a["train_patches_touching_test_pixels"] > 0
    assert a["test_patches_touching_train_pixels"] > 0
    assert a["min_train_test_distance"] == pytest.approx(30.0)
    with pytest.raises(LeakageError):
        check_no_leak(a, "random split")


def test_random_strategy_reports_leak_without_raising():
    s = make_layout(2, n_groups=30)
    r = make_splits(s, SplitConfig(strategy="random"), 5, (30, 30), seed=3)
    assert r.report["strategy"] == "random"
    assert r.report["audit"]["train_patches_touching_test_pixels"] > 0
    assert set(np.unique(r.split)) == {"train", "validation", "test"}
    np.testing.assert_array_equal(r.block, s["group"].to_numpy())
    assert len(r.blocks) == s["group"].nunique()


def test_too_small_buffer_stops_the_run():
    s = make_layout(3, n_groups=50, max_radius=8)
    cfg = SplitConfig(strategy="blocks", buffer=0.0, block_size=600.0)
    with pytest.raises(LeakageError, match="split.buffer"):
        make_splits(s, cfg, 9, (30, 30), seed=0)


def test_default_buffer_is_tight_and_sufficient():
    # (h + 1/2) pixels of the larger side: the test sample's own patch footprint
    assert default_buffer(9, (30, 30)) == 135.0
    assert default_buffer(9, (20, -5)) == 90.0
    assert default_buffer(1, (10, 10)) == 5.0
    # a pair h pixels apart is dropped, a pair h + 1 pixels apart is kept
    s = make_layout(0, n_groups=40, n_classes=2, size=120, max_radius=3)
    r = make_splits(s, SplitConfig(strategy="blocks"), 5, (30, 30), seed=0)
    xy = xy_of(s)
    from scipy.spatial import cKDTree

    te = cKDTree(xy[r.split == "test"])
    d, _ = te.query(xy, p=np.inf)
    kept = np.isin(r.split, ["train", "validation"])
    assert np.all(d[kept] >= 3 * 30 - 1e-6)
    assert np.all(r.split[(d <= 2 * 30 + 1e-6) & (r.split != "test")] == "excluded")


# ----------------------------------------------------------------------------- reproducibility


_CHILD = """
import json, sys
sys.path.insert(0, {repo!r})
from tests.test_split import make_layout
from pipeline.split.settings import SplitConfig
from pipeline.split.make import make_splits
s = make_layout(7, n_groups=60)
out = {{}}
for strat in ("blocks", "kfold", "random"):
    r = make_splits(s, SplitConfig(strategy=strat, k=3), 5, (30.0, 30.0), seed=42)
    out[strat] = {{"split": r.split.tolist(), "fold": r.fold.tolist(), "block": r.block.tolist(),
                  "report": r.report}}
print(json.dumps(out, sort_keys=True))
"""


def test_identical_assignment_in_two_processes():
    code = _CHILD.format(repo=str(REPO))
    outs = []
    for hashseed in ("1", "12345"):  # different str hashing in each process
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={"PYTHONHASHSEED": hashseed, "PATH": "/usr/bin:/bin"},
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        outs.append(json.loads(proc.stdout))
    assert outs[0] == outs[1]
    # and the same as in this process
    s = make_layout(7, n_groups=60)
    r = make_splits(s, SplitConfig(strategy="blocks", k=3), 5, (30.0, 30.0), seed=42)
    assert r.split.tolist() == outs[0]["blocks"]["split"]
    # a different seed changes the assignment
    r2 = make_splits(s, SplitConfig(strategy="blocks", k=3), 5, (30.0, 30.0), seed=43)
    assert r2.split.tolist() != r.split.tolist()


# ----------------------------------------------------------------------------- structure


def test_group_integrity_across_block_edges():
    # large blobs with small blocks: most groups cross block edges
    s = make_layout(11, n_groups=40, max_radius=10)
    r = make_splits(s, SplitConfig(strategy="blocks", block_size=300.0, buffer=150.0), 5, (30, 30), seed=0)
    df = pd.DataFrame({"g": s["group"], "block": r.block, "split": r.split})
    assert (df.groupby("g")["block"].nunique() == 1).all()
    kept = df[df.split != "excluded"]
    assert (kept.groupby("g")["split"].nunique() == 1).all()
    # and the groups really did cross edges (the test would be vacuous otherwise)
    cell = np.floor((s.x - r.blocks.geometry.total_bounds[0]) / 300.0)
    assert (pd.Series(cell.to_numpy()).groupby(s["group"].to_numpy()).nunique() > 1).sum() >= 5
    # the group's block holds a plurality of its samples
    assert r.blocks["block"].is_unique


def test_stratification_and_fractions():
    s = make_layout(5, n_groups=120, n_classes=4, size=400, max_radius=4)
    r = make_splits(s, SplitConfig(strategy="blocks"), 5, (30, 30), seed=1)
    c = r.report["counts"]
    for name in CLASS_NAMES[:4]:
        assert c["train"][name] > 0 and c["test"][name] > 0, name
    assert r.report["missing_classes"] == {"train": [], "test": []}
    kept = (r.split != "excluded").sum()
    frac = {k: (r.split == k).sum() / kept for k in ("train", "validation", "test")}
    assert 0.6 < frac["train"] < 0.8
    assert 0.08 < frac["validation"] < 0.22
    assert 0.08 < frac["test"] < 0.22
    assert r.report["dropped_by_buffer"] == int((r.split == "excluded").sum())
    rep = r.report
    assert set(rep) == {
        "strategy",
        "block_size",
        "buffer",
        "seed",
        "counts",
        "dropped_by_buffer",
        "missing_classes",
        "audit",
        "group_by",
        "sub_blocked_classes",
    }
    assert rep["group_by"] == "auto" and rep["sub_blocked_classes"] == []
    json.dumps(rep)  # serialisable as is
    assert rep["block_size"] >= 5 * 30 + rep["buffer"]


def test_kfold_each_sample_test_at_most_once():
    s = make_layout(8, n_groups=60, n_classes=3)
    r = make_splits(s, SplitConfig(strategy="kfold", k=4), 5, (30, 30), seed=2)
    assert len(r.folds) == 4 and r.report["k"] == 4 and len(r.report["folds"]) == 4
    times = np.zeros(len(s), int)
    xy = xy_of(s)
    for f, fold in enumerate(r.folds):
        times[fold.test] += 1
        assert np.all(r.fold[fold.test] == f)
        assert len(fold.validation) > 0 and len(fold.train) > 0
        check_no_leak(audit_split(xy, (30, 30), 5, fold.train, fold.test, fold.validation), f"fold {f}")
        assert r.report["folds"][f]["audit"]["train_patches_touching_test_pixels"] == 0
    assert times.max() == 1
    assert np.all((times == 1) == (r.fold >= 0))
    np.testing.assert_array_equal(r.split, np.where(np.isin(np.arange(len(s)), r.folds[0].test), "test", r.split))


# ----------------------------------------------------------------------------- bad input


def _two_far_groups():
    s = make_layout(0, n_groups=2, n_classes=2, size=20, max_radius=2)
    s.loc[s.group == 1, "x"] += 100_000
    return s


def test_too_few_blocks_uses_a_nearby_setting_or_names_one(caplog):
    s = _two_far_groups()
    with caplog.at_level("WARNING"):
        r = make_splits(s, SplitConfig(strategy="blocks"), 3, (30, 30), seed=0)
    # the default block size cannot split two polygons: a smaller one, tried on the input, is used and named
    assert r.report["adjusted"] == {"block_size": r.block_size} and r.config.block_size == r.block_size
    assert f"--set split.block_size={r.block_size:g}" in caplog.text and "need at least 3" in caplog.text
    check_no_leak(audit_split(xy_of(s), (30, 30), 3, r.folds[0].train, r.folds[0].test, r.folds[0].validation), "")
    # a grouping the user chose is not changed behind their back: the error names a change that works
    with pytest.raises(InputError, match="need at least 3") as ei:
        make_splits(s, SplitConfig(strategy="blocks", group_by="polygon"), 3, (30, 30), seed=0)
    assert "tried on this input, this works: --set split.group_by=block" in str(ei.value)
    s3 = make_layout(4, n_groups=30)
    with pytest.raises(InputError, match="split.k"):
        make_splits(s3, SplitConfig(strategy="kfold", k=20, block_size=3000.0), 3, (30, 30), seed=0)


def test_error_block_size_larger_than_scene():
    s = make_layout(4, n_groups=30)
    with pytest.raises(InputError, match="split.block_size=.*labelled extent"):
        make_splits(s, SplitConfig(strategy="blocks", block_size=1e6), 3, (30, 30), seed=0)


def test_error_buffer_removes_all_training():
    s = make_layout(4, n_groups=30)
    with pytest.raises(InputError, match="removes all .* training samples") as ei:
        make_splits(s, SplitConfig(strategy="blocks", buffer=1e6, block_size=900.0), 3, (30, 30), seed=0)
    assert not isinstance(ei.value, LeakageError)


def test_class_in_single_group_is_trained_and_reported():
    s = make_layout(9, n_groups=40, n_classes=3)
    lone = int(s.group.max())
    s.loc[s.group == lone, ["class_id", "class_name"]] = [9, "lonely"]
    r = make_splits(s, SplitConfig(strategy="blocks", group_by="polygon"), 5, (30, 30), seed=0)
    assert r.report["missing_classes"]["test"] == ["lonely"]
    assert r.report["counts"]["train"]["lonely"] > 0
    rk = make_splits(s, SplitConfig(strategy="kfold", k=3, group_by="polygon"), 5, (30, 30), seed=0)
    assert "lonely" in rk.report["missing_classes"]["test"]
    assert np.all(rk.fold[(s.group == lone).to_numpy()] == -1)
    # by default its polygon is cut into sub-blocks: trained and tested, without leakage
    ra = make_splits(s, SplitConfig(strategy="blocks"), 5, (30, 30), seed=0)
    assert ra.report["sub_blocked_classes"] == ["lonely"]
    assert ra.report["counts"]["train"]["lonely"] > 0 and ra.report["counts"]["test"]["lonely"] > 0
    assert ra.report["audit"]["train_patches_touching_test_pixels"] == 0


def test_class_without_training_data_raises():
    # a class whose only training block is emptied by the buffer: its two groups sit side by side,
    # so whichever goes to test, the buffer removes the other.
    s = make_layout(9, n_groups=40, n_classes=3)
    blob = pd.DataFrame(
        {
            "x": [400_000.0 + 15, 400_000.0 + 45],
            "y": [3_000_000.0 - 15] * 2,
            "row": [0, 0],
            "col": [0, 1],
            "class_id": [7, 7],
            "class_name": ["rare"] * 2,
            "group": [1000, 1001],
        }
    )
    s = pd.concat([s, blob], ignore_index=True)
    # a block edge between the two pixels: anchor at floor(min x / size) * size = 400000, size 30
    with pytest.raises(InputError, match="'rare'"):
        make_splits(s, SplitConfig(strategy="blocks", block_size=30.0, buffer=90.0), 3, (30, 30), seed=0)


def test_missing_columns_and_empty():
    with pytest.raises(InputError, match="lacks column"):
        make_splits(pd.DataFrame({"x": [1.0]}), SplitConfig(strategy="blocks"), 3, (30, 30), seed=0)
    empty = make_layout(0, n_groups=3).iloc[:0]
    with pytest.raises(InputError, match="no labelled samples"):
        make_splits(empty, SplitConfig(strategy="blocks"), 3, (30, 30), seed=0)


# ----------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("strategy", ["blocks", "kfold", "random"])
def test_outputs_gpkg_and_map(tmp_path, strategy):
    import pyogrio

    s = make_layout(6, n_groups=40)
    r = make_splits(s, SplitConfig(strategy=strategy, k=3), 5, (30, 30), seed=0, crs="EPSG:32119")
    assert isinstance(r, SplitResult) and isinstance(r.folds[0], Fold)
    assert len(r.split) == len(r.fold) == len(r.block) == len(s)
    p = write_splits_gpkg(r, s, tmp_path / "splits.gpkg", "EPSG:32119")
    layers = dict(pyogrio.list_layers(p))
    assert set(layers) == {"blocks", "buffer", "samples"}
    import geopandas as gpd

    blocks = gpd.read_file(p, layer="blocks")
    assert len(blocks) == len(r.blocks) and blocks.crs.to_epsg() == 32119
    buf = gpd.read_file(p, layer="buffer")
    assert len(buf) == (0 if strategy == "random" else len(r.folds))
    if strategy == "blocks":  # no train sample in the buffer zone, every test sample in it
        from shapely import contains_xy

        tr = xy_of(s)[r.folds[0].train]
        from shapely import intersects_xy

        assert not intersects_xy(buf.geometry.iloc[0], tr[:, 0], tr[:, 1]).any()
        te = xy_of(s)[r.folds[0].test]
        assert contains_xy(buf.geometry.iloc[0], te[:, 0], te[:, 1]).all()
    png = plot_split_map(s, r, tmp_path / "split_map.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # past max_blocks the block patches are left out (memory of a one-block-per-sample split)
    bare = plot_split_map(s, r, tmp_path / "bare.png", max_blocks=len(r.blocks) - 1)
    assert len(r.blocks) and bare.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and bare.read_bytes() != png.read_bytes()
    assert not list(tmp_path.glob(".*tmp*"))


# ----------------------------------------------------------------------------- demo scene


def _nc_samples():
    rasterio = pytest.importorskip("rasterio")
    import geopandas as gpd
    from rasterio import features

    from pipeline.inputs.sample_data import scene_dir

    try:
        d = scene_dir("nc-landsat7")
    except InputError as e:  # offline and not cached
        pytest.skip(str(e))
    with rasterio.open(d / "lsat7_2000_10.tif") as src:
        tr, shape, crs = src.transform, src.shape, src.crs
    poly = gpd.read_file(d / "landsat96_polygons.shp").to_crs(crs)
    gid = features.rasterize(
        ((g, i + 1) for i, g in enumerate(poly.geometry)), out_shape=shape, transform=tr, fill=0, dtype="int32"
    )
    rows, cols = np.nonzero(gid)
    xs, ys = rasterio.transform.xy(tr, rows, cols)
    grp = gid[rows, cols] - 1
    names = sorted(poly["label"].unique())
    cname = poly["label"].to_numpy()[grp]
    return (
        pd.DataFrame(
            {
                "x": np.asarray(xs, float),
                "y": np.asarray(ys, float),
                "row": rows,
                "col": cols,
                "class_id": [names.index(c) + 1 for c in cname],
                "class_name": cname,
                "group": grp,
            }
        ),
        (tr.a, tr.e),
        crs,
    )


def test_demo_scene_default_split_is_leak_free():
    s, res, crs = _nc_samples()
    r = make_splits(s, SplitConfig(strategy="blocks"), 9, res, seed=0, crs=crs)
    a = r.report["audit"]
    assert a["train_patches_touching_test_pixels"] == 0 and a["test_patches_touching_train_pixels"] == 0
    assert a["validation_patches_touching_test_pixels"] == 0
    assert r.report["buffer"] == pytest.approx(4.5 * 28.5)
    # agriculture is a single polygon: trained on, reported missing from test
    assert r.report["missing_classes"] == {"train": [], "test": ["agriculture"]}
    rk = make_splits(s, SplitConfig(strategy="kfold"), 9, res, seed=0, crs=crs)
    assert rk.report["audit"]["train_patches_touching_test_pixels"] == 0
    rr = make_splits(s, SplitConfig(strategy="random"), 9, res, seed=0, crs=crs)
    assert rr.report["audit"]["train_patches_touching_test_pixels"] > 0


def test_random_split_is_stratified_seeded_and_complete():
    s = make_layout(12, n_groups=50, n_classes=4)
    a = random_split(s, SplitFractions(), seed=5)
    b = random_split(s, SplitFractions(), seed=5)
    c = random_split(s, SplitFractions(), seed=6)
    for k in ("train", "validation", "test"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert not np.array_equal(a.test, c.test)
    allpos = np.sort(np.concatenate([a.train, a.validation, a.test]))
    np.testing.assert_array_equal(allpos, np.arange(len(s)))
    cid = s["class_id"].to_numpy()
    for k in np.unique(cid):
        n = int(np.sum(cid == k))
        assert abs(int(np.sum(cid[a.test] == k)) - 0.15 * n) <= 1
        assert abs(int(np.sum(cid[a.validation] == k)) - 0.15 * n) <= 1


def test_split_map_axes_name_the_crs_and_units():
    from pyproj import CRS

    from pipeline.split.outputs import _crs_text, _nice_length

    assert _crs_text(CRS.from_epsg(32119)) == ("NAD83 / North Carolina (EPSG:32119)", "m")
    assert _crs_text(CRS.from_epsg(4326))[1] == "degree"
    # a WKT whose PROJCS is "unnamed" (the demo's Landsat files) names its projection method instead
    unnamed = CRS.from_wkt(CRS.from_epsg(32119).to_wkt().replace("NAD83 / North Carolina", "unnamed"))
    assert _crs_text(unnamed)[0].startswith("unnamed Lambert Conic Conformal (2SP) CRS")
    assert _crs_text(None) == ("CRS unknown", "map units")
    assert [_nice_length(s) for s in (12_000.0, 0.9, 4800.0)] == [2000.0, 0.1, 500.0]


def test_split_map_of_a_geographic_crs_has_lon_lat_true_aspect_and_a_metric_scale_bar():
    # EPSG:4326 maps once had "easting (degree)", equal axes (east-west stretched by 1/cos(lat))
    # and a scale bar of "0.01 degree".
    from matplotlib.figure import Figure
    from pyproj import CRS

    from pipeline.split.outputs import _georeference

    ax = Figure().add_subplot()
    ax.set_xlim(10.0, 10.072)
    ax.set_ylim(49.928, 50.0)
    _georeference(ax, CRS.from_epsg(4326))
    assert ax.get_xlabel().startswith("longitude (degree)") and ax.get_ylabel() == "latitude (degree)"
    lat = np.radians(49.964)
    assert ax.get_aspect() == pytest.approx(1 / np.cos(lat), rel=1e-6)
    # one degree of longitude on the WGS 84 ellipsoid: pi a cos(lat) / (180 sqrt(1 - e2 sin^2 lat))
    a, e2 = 6378137.0, 0.00669437999014
    per_degree = np.pi * a * np.cos(lat) / (180 * np.sqrt(1 - e2 * np.sin(lat) ** 2))
    (bar,) = [a for a in ax.artists if hasattr(a, "txt_label")]
    label = bar.txt_label.get_children()[0].get_text()
    assert label == "1 km"  # a fifth of the 5.2 km width, rounded down to 1/2/5 x 10^k
    width = bar.size_bar.get_children()[0].get_width()
    assert width == pytest.approx(1000 / per_degree, rel=1e-4)

    ax = Figure().add_subplot()  # projected CRSs keep their own unit
    ax.set_xlim(500000, 502400)
    ax.set_ylim(5497600, 5500000)
    _georeference(ax, CRS.from_epsg(32633))
    assert ax.get_xlabel().startswith("easting (m)") and ax.get_ylabel() == "northing (m)"

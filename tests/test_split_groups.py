"""Spatial splits with few polygons (sub-blocks), scenes, user-supplied splits and hints that work."""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.errors import InputError
from pipeline.split.audit import audit_split
from pipeline.split.make import make_splits
from pipeline.split.settings import SplitConfig

CLASSES = ["water", "forest", "urban", "crop"]
RES = (30.0, 30.0)
COUNT_KEYS = (
    "train_patches_touching_test_pixels",
    "test_patches_touching_train_pixels",
    "validation_patches_touching_test_pixels",
    "test_patches_touching_validation_pixels",
)


def pixels_table(polys: list[tuple[int, int, int, int, int]], res=RES, x0=500_000.0, y0=4_000_000.0) -> pd.DataFrame:
    """Samples of rectangles (row0, col0, height, width, class index), one group per rectangle."""
    parts = []
    for g, (r0, c0, h, w, c) in enumerate(polys):
        rr, cc = np.mgrid[r0 : r0 + h, c0 : c0 + w]
        rr, cc = rr.ravel(), cc.ravel()
        parts.append(
            pd.DataFrame(
                {
                    "x": x0 + (cc + 0.5) * res[0],
                    "y": y0 - (rr + 0.5) * res[1],
                    "row": rr,
                    "col": cc,
                    "class_id": c + 1,
                    "class_name": CLASSES[c],
                    "group": g,
                }
            )
        )
    return pd.concat(parts, ignore_index=True).drop_duplicates(["row", "col"]).reset_index(drop=True)


def four_polygons() -> pd.DataFrame:
    """Four large polygons, one per class (the analyst's quick digitisation)."""
    return pixels_table([(0, 0, 30, 40, 0), (0, 50, 35, 30, 1), (45, 0, 30, 35, 2), (45, 45, 35, 35, 3)])


def assert_leak_free(s: pd.DataFrame, r, patch: int, res=RES) -> None:
    xy = s[["x", "y"]].to_numpy()
    for fold in r.folds:
        a = audit_split(xy, res, patch, fold.train, fold.test, fold.validation)
        assert all(a[k] == 0 for k in COUNT_KEYS), a
    assert all(r.report["audit"][k] == 0 for k in COUNT_KEYS)


# ----------------------------------------------------------------------------- sub-blocks


@pytest.mark.parametrize("strategy", ["blocks", "kfold"])
def test_four_polygons_one_per_class_get_a_spatial_test(strategy, caplog):
    s = four_polygons()
    with caplog.at_level(logging.WARNING, logger="pipeline.split"):
        r = make_splits(s, SplitConfig(strategy=strategy, k=3), 5, RES, seed=0)
    assert_leak_free(s, r, 5)
    assert r.report["sub_blocked_classes"] == sorted(CLASSES, key=CLASSES.index)
    assert r.report["group_by"] == "auto"
    for name in CLASSES:
        assert r.report["counts"]["train"][name] > 0
        tested = [f["counts"]["test"][name] for f in r.report.get("folds", [r.report])]
        assert sum(tested) > 0, name
    warning = " ".join(m.getMessage() for m in caplog.records if "sub-blocks" in m.getMessage())
    assert all(repr(c) in warning for c in CLASSES) and "split.group_by" in warning
    # the buffer really is what separates the two sides of one polygon
    assert r.report["dropped_by_buffer"] > 0


def test_group_by_polygon_keeps_polygons_whole_and_block_cuts_all():
    s = make_polys(9, n=30, big=False)
    rp = make_splits(s, SplitConfig(strategy="blocks", group_by="polygon"), 3, RES, seed=0)
    df = pd.DataFrame({"g": s.group, "b": rp.block})
    assert (df.groupby("g").b.nunique() == 1).all() and rp.report["sub_blocked_classes"] == []
    rb = make_splits(s, SplitConfig(strategy="blocks", group_by="block", block_size=300.0), 3, RES, seed=0)
    assert (pd.DataFrame({"g": s.group, "b": rb.block}).groupby("g").b.nunique() > 1).any()
    assert rb.report["sub_blocked_classes"] == sorted(s.class_name.unique(), key=CLASSES.index)
    assert_leak_free(s, rb, 3)


def make_polys(seed: int, n: int, big: bool, size: int = 160) -> pd.DataFrame:
    """Random rectangles: few large ones (``big``) or many small ones; classes dealt round-robin."""
    rng = np.random.default_rng(seed)
    lo, hi = (25, 50) if big else (2, 8)
    polys = []
    for g in range(n):
        h, w = rng.integers(lo, hi, 2)
        polys.append((int(rng.integers(0, size - h)), int(rng.integers(0, size - w)), int(h), int(w), g % 4))
    return pixels_table(polys)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    big=st.booleans(),
    n_few=st.integers(4, 8),
    n_many=st.integers(40, 90),
    patch=st.sampled_from([1, 3, 5]),
    strategy=st.sampled_from(["blocks", "kfold"]),
)
def test_property_random_layouts(seed, big, n_few, n_many, patch, strategy):
    s = make_polys(seed, n_few if big else n_many, big)
    r = make_splits(s, SplitConfig(strategy=strategy, k=3), patch, RES, seed=seed)
    assert_leak_free(s, r, patch)
    allpos = np.concatenate([r.folds[0].train, r.folds[0].validation, r.folds[0].test])
    assert len(np.unique(allpos)) == len(allpos)
    if big:  # every class has a polygon of at least 25 x 25 pixels: room for a train and a test side
        assert r.report["missing_classes"] == {"train": [], "test": []}, r.report["missing_classes"]


# ----------------------------------------------------------------------------- scenes


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n_scenes=st.integers(2, 3),
    overlap=st.booleans(),
    strategy=st.sampled_from(["blocks", "kfold"]),
    group_by=st.sampled_from(["auto", "block"]),
)
def test_property_scenes_never_mix(seed, n_scenes, overlap, strategy, group_by):
    """Scenes that overlap (dates of one place) or not (tiles): every unit lies in one scene and
    the audit, scene by scene, finds nothing."""
    parts = []
    for i in range(n_scenes):
        p = make_polys(seed + i, n=4, big=True, size=100)
        if not overlap:
            p = p.assign(x=p.x + i * 6000.0)
        parts.append(p.assign(scene=f"s{i}"))
    s = pd.concat(parts, ignore_index=True)
    r = make_splits(s, SplitConfig(strategy=strategy, k=3, group_by=group_by), 3, RES, seed=seed)
    assert (pd.DataFrame({"b": r.block, "sc": s.scene}).groupby("b").sc.nunique() == 1).all()
    xy = s[["x", "y"]].to_numpy()
    for sc in s.scene.unique():
        m = np.flatnonzero((s.scene == sc).to_numpy())
        for fold in r.folds:
            a = audit_split(
                xy,
                RES,
                3,
                np.intersect1d(fold.train, m),
                np.intersect1d(fold.test, m),
                np.intersect1d(fold.validation, m),
            )
            assert all(a[k] == 0 for k in COUNT_KEYS), (sc, a)


def two_dates() -> pd.DataFrame:
    """The same polygons seen on two dates: identical coordinates and group ids, two scenes."""
    a = make_polys(3, n=40, big=False)
    return pd.concat([a.assign(scene="2020-05"), a.assign(scene="2020-09")], ignore_index=True)


@pytest.mark.parametrize("strategy", ["blocks", "kfold"])
def test_blocks_groups_and_buffer_never_cross_scenes(strategy):
    s = two_dates()
    r = make_splits(s, SplitConfig(strategy=strategy, k=3), 3, RES, seed=0)
    # each unit and each group (per scene) lies in one scene
    units = pd.DataFrame({"b": r.block, "sc": s.scene, "g": s.group})
    assert (units.groupby("b").sc.nunique() == 1).all()
    assert set(r.blocks["scene"]) == {"2020-05", "2020-09"}
    # the audit is per scene: a training pixel of one date under a test pixel of the other is no leak
    for sc in ("2020-05", "2020-09"):
        m = (s.scene == sc).to_numpy()
        xy = s[["x", "y"]].to_numpy()
        for fold in r.folds:
            a = audit_split(
                xy, RES, 3, np.intersect1d(fold.train, np.flatnonzero(m)), np.intersect1d(fold.test, np.flatnonzero(m))
            )
            assert a["train_patches_touching_test_pixels"] == 0
    # the buffer only removes pixels near test pixels of their own scene
    one = make_splits(
        s[s.scene == "2020-05"].reset_index(drop=True),
        SplitConfig(strategy=strategy, k=3, block_size=r.block_size),
        3,
        RES,
        seed=0,
    )
    assert one.report["buffer"] == r.report["buffer"]
    near_other_only = 0
    xy = s[["x", "y"]].to_numpy()
    for sc in ("2020-05", "2020-09"):
        m = (s.scene == sc).to_numpy()
        te_other = xy[(r.split == "test") & ~m]
        tr_here = xy[(r.split == "train") & m]
        if len(te_other) and len(tr_here):
            d = np.abs(tr_here[:, None, :] - te_other[None, :, :]).max(-1).min(1)
            near_other_only += int((d <= r.report["buffer"]).sum())
    assert near_other_only > 0  # kept, because the nearby test pixel belongs to the other date


def test_group_by_scene_keeps_whole_scenes_apart():
    s = pd.concat([make_polys(i, n=12, big=False).assign(scene=f"tile{i}") for i in range(4)], ignore_index=True)
    r = make_splits(
        s,
        SplitConfig(strategy="blocks", group_by="scene", fractions={"train": 0.5, "validation": 0.25, "test": 0.25}),
        3,
        RES,
        seed=0,
    )
    per_scene = pd.DataFrame({"sc": s.scene, "sp": r.split}).groupby("sc").sp.unique()
    assert all(len(v) == 1 for v in per_scene)  # nothing excluded: other scenes are never near
    assert {v[0] for v in per_scene} == {"train", "validation", "test"}
    with pytest.raises(InputError, match="group_by"):
        make_splits(make_polys(1, n=12, big=False), SplitConfig(strategy="blocks", group_by="scene"), 3, RES, seed=0)


def test_scene_and_predefined_splits_write_true_layers(tmp_path):
    import geopandas as gpd

    from pipeline.split.outputs import plot_split_map, write_splits_gpkg

    s = pd.concat([make_polys(i, n=12, big=False).assign(scene=f"tile{i}") for i in range(4)], ignore_index=True)
    s["split"] = np.where(s.scene == "tile3", "test", "train")
    for cfg in (SplitConfig(strategy="blocks", group_by="scene"), SplitConfig(strategy="predefined")):
        r = make_splits(s, cfg, 3, RES, seed=0, crs="EPSG:32633")
        p = write_splits_gpkg(r, s, tmp_path / f"{cfg.strategy}.gpkg", "EPSG:32633")
        pts = gpd.read_file(p, layer="samples")
        blocks = gpd.read_file(p, layer="blocks").set_index("block")
        assert (pts["scene"].to_numpy() == s["scene"].to_numpy()).all()
        inside = blocks.geometry.loc[pts["block"]].reset_index(drop=True).covers(pts.geometry)
        assert inside.all()
        assert plot_split_map(s, r, tmp_path / f"{cfg.strategy}.png").stat().st_size > 0


# ----------------------------------------------------------------------------- predefined


def test_predefined_column_is_honoured_and_a_leak_is_reported_not_raised(caplog):
    s = four_polygons()
    # a leaking user split: left half of every polygon train, right half test, no buffer
    s["split"] = np.where(s["col"] % 50 < 15, "train", np.where(s["col"] % 50 < 20, "Validation", "test"))
    with caplog.at_level(logging.WARNING, logger="pipeline.split"):
        r = make_splits(s, SplitConfig(strategy="predefined"), 5, RES, seed=0)
    np.testing.assert_array_equal(r.split, s["split"].str.lower())
    assert r.report["strategy"] == "predefined" and r.report["audit"]["train_patches_touching_test_pixels"] > 0
    assert "inflated" in caplog.text
    s["split"] = s["split"].where(s.group != 2, "holdout")
    with pytest.raises(InputError, match="'holdout'"):
        make_splits(s, SplitConfig(strategy="predefined"), 5, RES, seed=0)
    with pytest.raises(InputError, match="split.column"):
        make_splits(s.drop(columns="split"), SplitConfig(strategy="predefined"), 5, RES, seed=0)


def test_predefined_files_name_scenes_or_csv_lists(tmp_path):
    s = pd.concat([make_polys(i, n=12, big=False).assign(scene=f"T{i}_B") for i in range(3)], ignore_index=True)
    (tmp_path / "test.csv").write_text("/data/T2_B.tif\n")
    cfg = SplitConfig(strategy="predefined", files={"train": ["T0_B", "/data/T1_B.tif"], "test": ["test.csv"]})
    from pipeline.split.predefined import expand_split_files
    from pipeline.split.settings import SplitFiles

    cfg = cfg.model_copy(update={"files": SplitFiles(**expand_split_files(cfg.files, tmp_path))})
    r = make_splits(s, cfg, 3, RES, seed=0)
    expect = s.scene.map({"T0_B": "train", "T1_B": "train", "T2_B": "test"}).to_numpy()
    np.testing.assert_array_equal(r.split, expect)
    assert all(r.report["audit"][k] == 0 for k in COUNT_KEYS)  # scenes are never compared
    with pytest.raises(InputError, match="'T2_B' are in no list"):
        make_splits(s, SplitConfig(strategy="predefined", files={"train": ["T0_B"], "test": ["T1_B"]}), 3, RES, seed=0)


# ----------------------------------------------------------------------------- hints


def apply_hint(cfg: SplitConfig, message: str) -> SplitConfig:
    sets = re.findall(r"--set split\.(\w+)=(\S+)", message)
    assert sets, message
    return SplitConfig(**{**cfg.model_dump(), **{k: yaml.safe_load(v.rstrip(";")) for k, v in sets}})


@pytest.mark.parametrize(
    "cfg",
    [
        SplitConfig(strategy="blocks", group_by="polygon"),  # four polygons kept whole: too few blocks
        SplitConfig(strategy="kfold", group_by="polygon", k=3),
        SplitConfig(strategy="blocks", block_size=2400.0),  # blocks as large as the labelled extent
        SplitConfig(strategy="kfold", k=20, block_size=900.0),
        SplitConfig(strategy="blocks", buffer=15.0),  # a buffer below the patch footprint: the audit finds a leak
        SplitConfig(strategy="blocks", buffer=2000.0, block_size=900.0),  # a buffer that removes all training data
    ],
)
def test_hints_work_when_applied(cfg):
    s = four_polygons()
    with pytest.raises(InputError) as ei:
        make_splits(s, cfg, 5, RES, seed=0)
    msg = str(ei.value)
    assert "\n" not in msg and "tried on this input, this works" in msg, msg
    r = make_splits(s, apply_hint(cfg, msg), 5, RES, seed=0)
    assert_leak_free(s, r, 5)
    assert r.report["missing_classes"] == {"train": [], "test": []}


def test_hint_says_when_no_spatial_split_is_possible():
    s = pixels_table([(0, 0, 3, 3, 0), (40, 40, 3, 3, 1), (80, 0, 3, 3, 2)])  # three tiny polygons
    with pytest.raises(InputError, match="no spatial split is possible.*'water'"):
        make_splits(s, SplitConfig(strategy="blocks"), 9, RES, seed=0)


# ----------------------------------------------------------------------------- shared real scenes


@pytest.mark.parametrize("config", ["landsat5_rstoolbox.yaml", "landsat7_ceholden.yaml", "sentinel2_eolearn.yaml"])
def test_shared_scenes_get_a_leak_free_spatial_test(config, shared_data):
    """The configs' labels and rasters (paths re-rooted on ../shared/data), split by blocks and
    kfold: audit counts 0 and every class in train and test."""
    from pathlib import Path

    from pipeline.config import parse_config
    from pipeline.inputs.labels import ingest_labels
    from pipeline.inputs.raster import RasterStack

    repo = Path(__file__).resolve().parents[1]
    text = (repo / "configs" / config).read_text().replace("../../shared/data", str(shared_data))
    cfg = parse_config(yaml.safe_load(text), config)
    r = cfg.rasters
    with RasterStack.open([Path(p) for p in r.paths], r.band_names, r.bands, r.nodata) as stack:
        s, _ = ingest_labels(
            cfg.labels, Path(cfg.labels.path), cfg.classes, stack, progress=False, on_unknown=cfg.labels.on_unknown
        )
        res, crs = stack.grid.res, stack.grid.crs
    for strategy in ("blocks", "kfold"):
        sp = make_splits(s, cfg.split.model_copy(update={"strategy": strategy}), cfg.patch.size, res, cfg.seed, crs)
        assert_leak_free(s, sp, cfg.patch.size, res)
        assert sp.report["missing_classes"] == {"train": [], "test": []}, (strategy, sp.report["missing_classes"])


def test_class_without_test_gets_a_warning_with_a_fix_that_works(caplog):
    grid = [(r, c, 6, 6, (r // 20 + c // 20) % 3) for r in range(0, 120, 20) for c in range(0, 120, 20)]
    s = pixels_table(grid + [(2, 121, 5, 5, 3), (2, 128, 5, 5, 3)])  # "crop": two polygons in one block
    cfg = SplitConfig(strategy="blocks", group_by="polygon", block_size=1500.0)
    with caplog.at_level(logging.WARNING, logger="pipeline.split"):
        r = make_splits(s, cfg, 3, RES, seed=0)
    assert r.report["missing_classes"]["test"] == ["crop"]
    msg = " ".join(m.getMessage() for m in caplog.records if "no test samples" in m.getMessage())
    assert "'crop'" in msg and "this gives every class a test" in msg, msg
    fixed = make_splits(s, apply_hint(cfg, msg), 3, RES, seed=0)
    assert fixed.report["missing_classes"] == {"train": [], "test": []}
    assert_leak_free(s, fixed, 3)


@pytest.mark.parametrize("seed", [39, 54, 59])
def test_validation_never_takes_the_last_training_block_of_a_class(seed):
    # layouts where a class's only training block in some fold used to become that fold's validation
    s = make_polys(seed, 4 + seed % 5, big=True)
    r = make_splits(s, SplitConfig(strategy="kfold", k=3), [1, 3, 5][seed % 3], RES, seed=seed)
    for f in r.report["folds"]:
        assert all(n > 0 for n in f["counts"]["train"].values()), f["counts"]["train"]


def test_kfold_deals_again_when_the_buffer_empties_a_class_in_one_fold(monkeypatch):
    """Found by the property test above (seed 3950, two tiles): the first dealing of the units
    puts the only training polygon of 'crop' (23 pixels) in fold 2 beside a test block, and the
    buffer clears it. Another dealing from the same seed trains every class in every fold,
    leak-free; with one dealing allowed the run stops with the old message."""
    import pipeline.split.kfold as split_module

    parts = [make_polys(3950 + i, n=4, big=True, size=100).assign(scene=f"s{i}") for i in range(2)]
    parts[1] = parts[1].assign(x=parts[1].x + 6000.0)
    s = pd.concat(parts, ignore_index=True)
    cfg = SplitConfig(strategy="kfold", k=3, group_by="auto")
    r = make_splits(s, cfg, 3, RES, seed=3950)
    assert r.report["deal"] >= 1
    for fold in r.folds:
        assert set(s["class_name"].to_numpy()[fold.train]) == set(s["class_name"])
        a = audit_split(s[["x", "y"]].to_numpy(), RES, 3, fold.train, fold.test, fold.validation)
        assert all(a[k] == 0 for k in COUNT_KEYS), a
    # With one dealing allowed, 'crop' cannot keep training data in every fold: rather than stop,
    # kfold keeps its polygons whole and never tests them (train-only), and cross-validates the rest.
    monkeypatch.setattr(split_module, "KFOLD_DEALS", 1)
    r1 = make_splits(s, cfg, 3, RES, seed=3950)
    assert r1.report["train_only_classes"] == ["crop"] and "crop" in r1.report["missing_classes"]["test"]
    crop = (s["class_name"] == "crop").to_numpy()
    assert np.all(r1.fold[crop] == -1)
    for fold in r1.folds:
        assert crop[fold.train].any() and not crop[fold.test].any()
        a = audit_split(s[["x", "y"]].to_numpy(), RES, 3, fold.train, fold.test, fold.validation)
        assert all(a[k] == 0 for k in COUNT_KEYS), a

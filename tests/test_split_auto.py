"""``split.strategy: auto`` (the default) and the nearby setting used when the defaults cannot split.

Every statistic a test relies on (groups tested per class, times a sample is tested, the audit) is
recomputed here from the folds, independently of the split's own report.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from pipeline.core.errors import InputError
from pipeline.split.audit import audit_split
from pipeline.split.make import make_splits
from pipeline.split.settings import SplitConfig
from tests.test_split import make_layout
from tests.test_split_groups import COUNT_KEYS, RES, assert_leak_free, pixels_table

SMALL = [(300, 400, 9, 9, 0), (1500, 300, 10, 12, 1), (900, 1500, 12, 14, 2), (1700, 1600, 9, 11, 3)]


def four_small_polygons() -> pd.DataFrame:
    """Four small polygons (81-168 pixels), one per class, far apart on a 2000 x 1900 scene at 30 m."""
    return pixels_table(SMALL)


def times_tested(r, n: int) -> np.ndarray:
    t = np.zeros(n, dtype=np.int64)
    for f in r.folds:
        t[f.test] += 1
    return t


def test_groups_tested(s: pd.DataFrame, r) -> dict[str, int]:
    """Distinct polygons tested per class, over all folds."""
    tested = times_tested(r, len(s)) > 0
    return {
        str(c): int(s.loc[tested & (s.class_name == c).to_numpy(), "group"].nunique()) for c in s.class_name.unique()
    }


test_groups_tested.__test__ = False  # a helper, not a test


def test_default_is_auto_and_cross_validates_polygons():
    assert SplitConfig().strategy == "auto"
    s = make_layout(5, n_groups=60, n_classes=3)
    r = make_splits(s, SplitConfig(), 5, (30, 30), seed=0)
    assert r.strategy == "kfold" and r.report["requested"] == "auto" and "not large" in r.report["auto_reason"]
    assert len(r.folds) == 5 and r.config.strategy == "kfold"
    t = times_tested(r, len(s))
    # every sample of a testable unit is tested exactly once; the fold column says where
    assert t.max() == 1 and np.array_equal(t == 1, r.fold >= 0)
    for f, fold in enumerate(r.folds):
        assert np.all(r.fold[fold.test] == f)
    # every polygon is tested (none is so alone that it cannot be), whole, in one fold
    g = s["group"].to_numpy()
    assert set(g[t == 1]) == set(g)
    assert all(np.unique(r.fold[g == x]).size == 1 for x in np.unique(g))
    assert_leak_free(s, r, 5, (30, 30))


def test_auto_takes_one_blocks_split_only_for_large_data_it_tests_well():
    s = make_layout(7, n_groups=240, n_classes=3, size=400, max_radius=4)
    big = make_splits(s, SplitConfig(), 5, (30, 30), seed=0, large=True)
    assert big.strategy == "blocks" and big.report["requested"] == "auto" and len(big.folds) == 1
    assert min(test_groups_tested(s, big).values()) >= 2  # the reason it may: every class on >= 2 polygons
    small = make_splits(s, SplitConfig(), 5, (30, 30), seed=0, large=False)
    assert small.strategy == "kfold"


def test_auto_cross_validates_large_data_when_one_split_tests_a_class_on_one_polygon():
    s = make_layout(7, n_groups=240, n_classes=3, size=400, max_radius=4)
    # class 'urban' keeps two polygons only: one blocks split can test at most one of them
    urban = s.group[s.class_name == "urban"].unique()
    s = s[(s.class_name != "urban") | s.group.isin(urban[:2])].reset_index(drop=True)
    single = make_splits(s, SplitConfig(strategy="blocks"), 5, (30, 30), seed=0)
    assert test_groups_tested(s, single)["urban"] < 2
    r = make_splits(s, SplitConfig(), 5, (30, 30), seed=0, large=True)
    assert r.strategy == "kfold" and "'urban'" in r.report["auto_reason"]
    assert test_groups_tested(s, r)["urban"] == 2


@pytest.mark.parametrize("strategy", ["blocks", "kfold", "auto"])
def test_four_small_polygons_split_with_a_nearby_setting(strategy, caplog):
    """Today's defaults cannot split four small polygons (kfold: "only 0 usable block(s)"); the
    split uses a setting tried on the input, names it in a warning and in the report, and is
    leak-free by an audit recomputed here."""
    s = four_small_polygons()
    assert s.groupby("group").size().between(80, 200).all()
    with caplog.at_level(logging.WARNING, logger="pipeline.split"):
        r = make_splits(s, SplitConfig(strategy=strategy), 9, RES, seed=42)
    adjusted = r.report["adjusted"]
    assert adjusted and set(adjusted) <= {"block_size", "group_by", "k"}
    for key, value in adjusted.items():
        assert getattr(r.config, key) == value
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        assert f"--set split.{key}={shown}" in caplog.text
    assert "default settings cannot split" in caplog.text
    assert_leak_free(s, r, 9)
    tested = times_tested(r, len(s))
    assert tested.max() == 1 and tested.sum() > 0
    for fold in r.folds:  # every class is trained in every fold
        assert set(s.class_name.to_numpy()[fold.train]) == set(s.class_name)
    xy = s[["x", "y"]].to_numpy()
    for fold in r.folds:
        a = audit_split(xy, RES, 9, fold.train, fold.test, fold.validation)
        assert all(a[k] == 0 for k in COUNT_KEYS) and a["min_train_test_distance"] > 4 * RES[0]


def test_auto_prefers_the_split_that_tests_more_classes():
    """On the four small polygons k-fold can test one class at most (each fold must keep training
    pixels of every class beyond the buffer); one blocks split tests all four, so auto takes it."""
    s = four_small_polygons()
    r = make_splits(s, SplitConfig(), 9, RES, seed=42)
    kf = make_splits(s, SplitConfig(strategy="kfold"), 9, RES, seed=42)
    n_tested = {
        name: len(set(s.class_name)) - len(x.report["missing_classes"]["test"])
        for name, x in (("auto", r), ("kfold", kf))
    }
    assert r.strategy == "blocks" and n_tested["auto"] == 4 > n_tested["kfold"]
    assert set(test_groups_tested(s, r).values()) == {1}


def test_a_setting_the_user_chose_is_not_changed():
    """Only settings left at their defaults are changed; a failing choice of the user stops the run
    with a change that was tried and works."""
    s = four_small_polygons()
    with pytest.raises(InputError, match="tried on this input, this works: --set split.block_size=420") as ei:
        make_splits(s, SplitConfig(strategy="blocks", block_size=1200.0), 9, RES, seed=42)
    assert "\n" not in str(ei.value)
    with pytest.raises(InputError, match="tried on this input, this works: .*split.k=") as ei:
        make_splits(s, SplitConfig(strategy="kfold", k=5, block_size=600.0), 9, RES, seed=42)


def test_kfold_makes_a_class_train_only_rather_than_stop():
    """Two small polygons of 'crop' side by side: whichever is tested, the buffer clears the other,
    in every dealing. Rather than stop, kfold trains 'crop' in every fold, never tests it, says so,
    and cross-validates the other classes."""
    base = [(r, c, 12, 12, k) for k, (r, c) in enumerate([(0, 0), (0, 40), (40, 0)])]
    polys = base + [(r + 80, c, h, w, k) for r, c, h, w, k in base] + [(r, c + 80, h, w, k) for r, c, h, w, k in base]
    s = pixels_table(polys + [(200, 200, 6, 3, 3), (200, 204, 6, 3, 3)])
    # blocks of 14 pixels: the two 3-pixel-wide 'crop' polygons fall in two blocks, 1 pixel apart
    r = make_splits(s, SplitConfig(strategy="kfold", k=3, group_by="polygon", block_size=420.0), 9, RES, seed=0)
    crop = np.flatnonzero((s.class_name == "crop").to_numpy())
    assert r.report["train_only_classes"] == ["crop"] and "crop" in r.report["missing_classes"]["test"]
    assert np.all(r.fold[crop] == -1)
    for fold in r.folds:
        assert np.isin(crop, fold.train).all()  # far from every test polygon: never removed by the buffer
    assert r.report["missing_classes"]["train"] == []
    assert set(test_groups_tested(s, r)) - {"crop"} and all(
        v >= 2 for c, v in test_groups_tested(s, r).items() if c != "crop"
    )
    assert_leak_free(s, r, 9)

"""The leakage audit against a brute-force O(n^2) count, and its error."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.errors import InputError, LeakageError
from pipeline.split.audit import audit_split, check_no_leak


def brute_force(xy, row, col, k, tr, te, va):
    """Pixel-index reference: the footprint of a contains pixel b iff |drow|, |dcol| <= h."""
    h = k // 2

    def touching(a, b):
        n = 0
        for i in a:
            if any(abs(col[i] - col[j]) <= h and abs(row[i] - row[j]) <= h for j in b):
                n += 1
        return n

    d = [math.dist(xy[i], xy[j]) for i in tr for j in te]
    return {
        "min_train_test_distance": min(d) if d else None,
        "train_patches_touching_test_pixels": touching(tr, te),
        "test_patches_touching_train_pixels": touching(te, tr),
        "validation_patches_touching_test_pixels": touching(va, te),
        "test_patches_touching_validation_pixels": touching(te, va),
    }


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 60),
    k=st.sampled_from([1, 3, 5, 7]),
    res=st.sampled_from([(1.0, 1.0), (30.0, 30.0), (28.5, -28.5), (20.0, 5.0), (3.0, 11.0)]),
)
def test_audit_matches_brute_force(seed, n, k, res):
    rng = np.random.default_rng(seed)
    # pixel centres on a small grid so that contacts are frequent
    cols = rng.integers(0, 15, n)
    rows = rng.integers(0, 15, n)
    xy = np.column_stack([1000.0 + (cols + 0.5) * abs(res[0]), 5000.0 - (rows + 0.5) * abs(res[1])])
    lab = rng.integers(0, 3, n)
    tr, va, te = (np.flatnonzero(lab == i) for i in range(3))
    got = audit_split(xy, res, k, tr, te, va)
    want = brute_force(xy, rows, cols, k, tr, te, va)
    assert set(got) == set(want)
    for key, v in want.items():
        if key == "min_train_test_distance":
            assert (got[key] is None) == (v is None)
            if v is not None:
                assert got[key] == pytest.approx(v)
        else:
            assert got[key] == v, key
            assert isinstance(got[key], int)


def test_audit_footprint_boundary_non_square():
    # 3x3 patch (h=1) on 20 x 5 pixels: a neighbour 1 column / 1 row away touches,
    # 2 columns or 2 rows away does not, whatever the map distance.
    res = (20.0, 5.0)
    xy = np.array([[10.0, 2.5], [30.0, 7.5], [50.0, 2.5], [10.0, 12.5]])
    a = audit_split(xy, res, 3, [0], [1])
    assert a["train_patches_touching_test_pixels"] == 1
    assert a["test_patches_touching_train_pixels"] == 1
    assert audit_split(xy, res, 3, [0], [2])["train_patches_touching_test_pixels"] == 0  # 2 columns, 40 m
    assert audit_split(xy, res, 3, [0], [3])["train_patches_touching_test_pixels"] == 0  # 2 rows, 10 m
    assert audit_split(xy, res, 5, [0], [3])["train_patches_touching_test_pixels"] == 1  # h=2 reaches it


def test_audit_empty_sets():
    xy = np.zeros((3, 2))
    a = audit_split(xy, (1, 1), 3, [], [0, 1])
    assert a["min_train_test_distance"] is None
    assert all(a[k] == 0 for k in a if k != "min_train_test_distance")
    a = audit_split(xy, (1, 1), 3, np.array([True, False, False]), np.array([False, True, True]))
    assert a["train_patches_touching_test_pixels"] == 1
    assert a["validation_patches_touching_test_pixels"] == 0


def test_check_no_leak():
    clean = {
        "min_train_test_distance": 100.0,
        "train_patches_touching_test_pixels": 0,
        "test_patches_touching_train_pixels": 0,
        "validation_patches_touching_test_pixels": 0,
        "test_patches_touching_validation_pixels": 0,
    }
    check_no_leak(clean, "x")
    for key in list(clean)[1:]:
        with pytest.raises(LeakageError) as ei:
            check_no_leak({**clean, key: 3}, "split fold 2")
        msg = str(ei.value)
        assert "\n" not in msg and msg.startswith("split fold 2:") and "split.buffer" in msg
        assert isinstance(ei.value, InputError)


def test_audit_fast_enough_for_1e5_samples():
    # not a timing assert: just that the tree-based audit handles 10^5 samples
    rng = np.random.default_rng(0)
    n = 100_000
    xy = np.column_stack([rng.integers(0, 2000, n) * 30.0 + 15, rng.integers(0, 2000, n) * 30.0 + 15])
    lab = rng.integers(0, 3, n)
    a = audit_split(xy, (30, 30), 9, np.flatnonzero(lab == 0), np.flatnonzero(lab == 2), np.flatnonzero(lab == 1))
    assert a["train_patches_touching_test_pixels"] > 0

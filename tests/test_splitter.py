"""The scikit-learn compatible spatial splitter: blocks plus buffer inside model selection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.tree import DecisionTreeClassifier

from pipeline import SpatialBlockSplit
from pipeline.split.audit import audit_split


def clustered(seed: int = 0, n_clusters: int = 30, per: int = 25):
    """Points in tight clusters (one class and one group each) with features tied to the cluster:
    a random split shares clusters between train and test, a spatial one must not."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 10_000, size=(n_clusters, 2))
    cls = np.arange(n_clusters) % 3
    xy = np.repeat(centres, per, axis=0) + rng.normal(0, 40, size=(n_clusters * per, 2))
    y = np.repeat(cls, per)
    groups = np.repeat(np.arange(n_clusters), per)
    X = np.column_stack([np.repeat(rng.normal(size=(n_clusters, 3)), per, axis=0) + rng.normal(0, 0.05, (len(y), 3))])
    return X, y, groups, xy


def chebyshev_min(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a[:, None, :] - b[None, :, :]).max(-1).min())


def test_folds_respect_blocks_buffer_and_groups():
    X, y, groups, xy = clustered()
    cv = SpatialBlockSplit(n_splits=4, block_size=1500.0, buffer=200.0, coords=xy)
    folds = list(cv.split(X, y, groups))
    assert len(folds) == cv.get_n_splits() == 4
    seen = np.zeros(len(y), int)
    for train, test in folds:
        assert len(np.intersect1d(train, test)) == 0 and len(test) > 0
        assert chebyshev_min(xy[train], xy[test]) > 200.0  # the buffer holds
        assert not set(groups[train]) & set(groups[test])  # clusters stay whole
        assert set(y[train]) == {0, 1, 2}
        seen[test] += 1
    assert seen.max() == 1 and seen.sum() > 0.9 * len(y)
    # coordinates as columns of a DataFrame give the same folds
    df = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "f0": X[:, 0]})
    folds_df = list(SpatialBlockSplit(n_splits=4, block_size=1500.0, buffer=200.0).split(df, y, groups))
    for (a, b), (c, d) in zip(folds, folds_df):
        np.testing.assert_array_equal(a, c) and np.testing.assert_array_equal(b, d)


def test_cross_val_score_and_grid_search():
    X, y, groups, xy = clustered(1)
    cv = SpatialBlockSplit(n_splits=3, block_size=2000.0, buffer=100.0, coords=xy)
    spatial = cross_val_score(DecisionTreeClassifier(random_state=0), X, y, groups=groups, cv=cv)
    assert spatial.shape == (3,) and np.all((spatial >= 0) & (spatial <= 1))
    gs = GridSearchCV(DecisionTreeClassifier(random_state=0), {"max_depth": [1, 3]}, cv=cv)
    gs.fit(X, y, groups=groups)
    assert gs.best_params_["max_depth"] in (1, 3) and len(gs.cv_results_["split2_test_score"]) == 2
    # the test folds are exactly the splitter's
    folds = list(cv.split(X, y, groups))
    tree = DecisionTreeClassifier(random_state=0)
    mine = [tree.fit(X[tr], y[tr]).score(X[te], y[te]) for tr, te in folds]
    np.testing.assert_allclose(spatial, mine)


def test_no_leak_by_the_independent_audit_and_clear_errors():
    X, y, groups, xy = clustered(2)
    for train, test in SpatialBlockSplit(n_splits=3, coords=xy, pixel_size=30.0, buffer=30.0).split(X, y):
        a = audit_split(xy, (30.0, 30.0), 1, train, test)
        assert a["train_patches_touching_test_pixels"] == 0
    with pytest.raises(ValueError, match="shape"):
        next(SpatialBlockSplit(coords=xy[:5]).split(X, y))
    with pytest.raises(ValueError, match="n_splits"):
        next(SpatialBlockSplit(n_splits=20, block_size=5000.0, coords=xy, group_by="polygon").split(X, y, groups))

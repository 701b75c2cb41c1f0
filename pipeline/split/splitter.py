"""A scikit-learn cross-validation splitter with spatial blocks and a buffer.

:class:`SpatialBlockSplit` plugs the pipeline's ``kfold`` strategy into
scikit-learn's model selection (``cross_val_score``, ``GridSearchCV``, ...):
samples are grouped into square blocks, blocks (or whole ``groups``) are dealt
into folds stratified by class, and training samples within ``buffer`` (Chebyshev
distance, map units) of a test sample are left out of that fold's training set.

Example
-------
>>> cv = SpatialBlockSplit(n_splits=5, block_size=500.0, buffer=45.0, coords=xy)
>>> cross_val_score(DecisionTreeClassifier(), X, y, cv=cv)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.errors import InputError
from pipeline.split.settings import GroupBy, SplitConfig, SplitFractions

__all__ = ["SpatialBlockSplit"]


class SpatialBlockSplit:
    """Spatial k-fold cross-validation: blocks plus buffer.

    Parameters
    ----------
    n_splits : int, default 5
        Number of folds (at least 2).
    block_size : float, optional
        Block side in map units; default: the pipeline's rule (as large as
        possible while leaving enough blocks to stratify).
    buffer : float, default 0.0
        Training samples within this Chebyshev distance of a test sample are
        dropped from that fold's training indices.
    coords : array_like, shape (n_samples, 2), optional
        Map coordinates of the samples. Without it they are read from ``X``:
        the columns ``xy_columns`` of a DataFrame, or of an array.
    xy_columns : pair of str or int, default ("x", "y")
        Coordinate columns of ``X`` (names for a DataFrame, positions for an
        array; names fall back to positions 0 and 1 for arrays).
    pixel_size : float, default 1.0
        Resolution in map units, used for the default block size and for the
        leakage audit (patch width 1).
    group_by : {"auto", "polygon", "block"}, default "auto"
        Keep each of ``groups`` (e.g. polygons) whole, cut the groups of classes
        with too few of them into blocks (``auto``), or cut every group.
    random_state : int, default 0
        Seed of the stratified assignment.
    """

    def __init__(
        self,
        n_splits: int = 5,
        block_size: float | None = None,
        buffer: float = 0.0,
        coords: Any = None,
        xy_columns: Sequence[Any] = ("x", "y"),
        pixel_size: float = 1.0,
        group_by: GroupBy = "auto",
        random_state: int = 0,
    ) -> None:
        self.n_splits = n_splits
        self.block_size = block_size
        self.buffer = buffer
        self.coords = coords
        self.xy_columns = xy_columns
        self.pixel_size = pixel_size
        self.group_by = group_by
        self.random_state = random_state

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """Number of folds."""
        return int(self.n_splits)

    def _xy(self, X: Any, n: int) -> np.ndarray:
        if self.coords is not None:
            xy = np.asarray(self.coords, dtype=np.float64)
        elif isinstance(X, pd.DataFrame):
            xy = X[list(self.xy_columns)].to_numpy(dtype=np.float64)
        else:
            arr = np.asarray(X)
            cols = [int(c) if isinstance(c, (int, np.integer)) else i for i, c in enumerate(self.xy_columns)]
            xy = arr[:, cols].astype(np.float64)
        if xy.shape != (n, 2):
            raise ValueError(f"coordinates must have shape ({n}, 2), got {xy.shape}")
        return xy

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train, test)`` integer index arrays, one pair per fold.

        Parameters
        ----------
        X : array_like or DataFrame, shape (n_samples, n_features)
        y : array_like, shape (n_samples,), optional
            Classes to stratify by (one class if omitted).
        groups : array_like, shape (n_samples,), optional
            Samples of one group (polygon) stay on one side unless cut (``group_by``);
            default: every sample is its own group.
        """
        n = len(X)
        from pipeline.split.make import make_splits

        samples = self._samples(self._xy(X, n), y, groups, n)
        cfg = SplitConfig(
            strategy="kfold",
            k=self.n_splits,
            block_size=self.block_size,
            buffer=self.buffer,
            group_by=self.group_by,
            random_contrast=False,
            fractions=SplitFractions(train=0.8, validation=0.0, test=0.2),
        )
        try:
            res = make_splits(samples, cfg, 1, (self.pixel_size, self.pixel_size), seed=int(self.random_state))
        except InputError as e:  # the pipeline's hints name config keys: say them as parameters here
            msg = str(e).replace("split.k", "n_splits").replace("--set ", "").replace("split.", "")
            raise ValueError(msg) from None
        for fold in res.folds:
            yield fold.train.copy(), fold.test.copy()

    @staticmethod
    def _samples(xy: np.ndarray, y: Any, groups: Any, n: int) -> pd.DataFrame:
        labels = np.zeros(n, dtype=np.int64) if y is None else np.asarray(y).ravel()
        if len(labels) != n:
            raise ValueError(f"y has {len(labels)} samples, X has {n}")
        names, code = np.unique(labels.astype(str), return_inverse=True)
        grp = np.arange(n) if groups is None else pd.factorize(np.asarray(groups).ravel())[0]
        return pd.DataFrame(
            {
                "x": xy[:, 0],
                "y": xy[:, 1],
                "row": 0,
                "col": 0,
                "class_id": code + 1,
                "class_name": names[code],
                "group": grp.astype(np.int64),
            }
        )

    def __repr__(self) -> str:
        return (
            f"SpatialBlockSplit(n_splits={self.n_splits}, block_size={self.block_size}, buffer={self.buffer}, "
            f"group_by={self.group_by!r})"
        )

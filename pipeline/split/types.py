"""The data every split strategy receives and returns.

:class:`SplitInput` is what :func:`pipeline.split.make.make_splits` validates once and hands to
a strategy; :class:`SplitResult` (with its :class:`Fold`\\ s) is what a strategy returns and what
:mod:`pipeline.split.outputs` draws and writes; :class:`Layout` is the assignment units of the
spatial strategies at one block size (:mod:`pipeline.split.layout`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from pipeline.split.settings import SplitConfig

__all__ = ["Fold", "Layout", "SplitFunction", "SplitInput", "SplitResult"]


@dataclass
class Fold:
    """One train/validation/test partition.

    Attributes
    ----------
    train, validation, test : ndarray of int64, shapes (n_train,), (n_val,), (n_test,)
        Sorted integer positions into the samples table (``samples.iloc``).
    """

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


@dataclass
class SplitResult:
    """Outcome of :func:`~pipeline.split.make.make_splits`.

    Attributes
    ----------
    strategy : str
        A key of :data:`~pipeline.split.make.STRATEGIES`.
    folds : list of Fold
        One fold for ``blocks``, ``random`` and ``predefined``, k folds for ``kfold``.
    split : ndarray of str, shape (n,)
        Per sample ``"train"``, ``"validation"``, ``"test"`` or ``"excluded"``
        (dropped by the buffer); for kfold the assignment of fold 0.
    fold : ndarray of int64, shape (n,)
        kfold: the fold in which the sample is test (-1: never test, for blocks
        holding a class found in one block only); 0 for other strategies.
    block : ndarray of int64, shape (n,)
        Assignment unit of each sample: the block its group belongs to
        (``random``, ``predefined``: the group id; ``group_by: scene``: the scene).
    blocks : GeoDataFrame
        One row per block with columns ``block``, ``split`` (kfold: fold 0),
        ``fold``, ``n_samples``, ``scene`` and a ``geometry`` covering the
        block's samples (``random``/``predefined``: the square envelope of the
        group's pixels, split ``"mixed"`` if the group is spread over several
        splits).
    report : dict
        The ``"split"`` object of ``metrics.json``.
    """

    strategy: str
    folds: list[Fold]
    split: np.ndarray
    fold: np.ndarray
    block: np.ndarray
    blocks: gpd.GeoDataFrame
    report: dict
    block_size: float | None = None
    buffer: float | None = None
    fold_splits: list[np.ndarray] = field(default_factory=list)  # kfold: per-fold split labels
    #: The settings the split was made with: the configured ones, or a nearby setting that
    #: :func:`~pipeline.split.make.make_splits` used when the defaults could not split.
    config: SplitConfig | None = None


@dataclass(frozen=True)
class SplitInput:
    """The validated inputs every strategy receives (arrays have n rows, in samples' order)."""

    samples: pd.DataFrame
    cfg: SplitConfig
    patch_size: int
    rx: float
    ry: float
    seed: int
    crs: Any
    xy: np.ndarray  # (n, 2) float64
    groups: np.ndarray  # (n,) int64, unique across scenes
    cls: np.ndarray  # (n,) int64 index into names
    names: list[str]
    scene: np.ndarray  # (n,) int64 index into scene_names
    scene_names: list[str]
    quiet: bool = False  # hint trials: no warnings
    large: bool = False  # dense labels with sampling on: ``auto`` may choose one blocks split

    @property
    def n(self) -> int:
        return len(self.samples)


@dataclass(frozen=True)
class Layout:
    """Assignment units at one block size: the unit of each sample and samples per unit and class."""

    size: float | None  # None: group_by scene (no grid)
    block: np.ndarray  # (n,) unit id of each sample
    cell: np.ndarray | None  # (n,) grid cell of each sample (drawing); None without a grid
    grid: tuple[float, float, int] | None  # x0, y0, nx
    unit_ids: np.ndarray  # (U,) sorted unit ids
    unit_of: np.ndarray  # (n,) index into unit_ids
    C: np.ndarray  # (U, K) samples per unit and class
    n_groups: int
    sub_classes: tuple[int, ...] = ()  # classes whose polygons were cut into sub-blocks


#: A strategy: the validated input -> the split (see :data:`pipeline.split.make.STRATEGIES`).
SplitFunction = Callable[[SplitInput], SplitResult]

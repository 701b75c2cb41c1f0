"""The partition of the model that maps: every labelled sample trains it, except a validation share
drawn by whole units for the models that stop early on validation data (the deep models).

After the folds have measured accuracy (each fold model tested on the units it did not see),
the map comes from one more fit on all labelled data (Roberts et al. 2017: validation tells how
well the procedure does; the final model uses everything). Its validation set, which only
decides when to stop, is drawn like a fold's: whole assignment units (blocks, or polygons),
stratified so that every class keeps training units (:func:`pipeline.split.assign.assign_units`).
Nothing is tested, so no buffer is needed; as in the folds, validation and training are not
buffered from each other.
"""

from __future__ import annotations

import numpy as np

from pipeline.split.assign import TRAIN, assign_units
from pipeline.split.types import Fold

__all__ = ["refit_fold"]


def refit_fold(units: np.ndarray, cls: np.ndarray, validation_share: float, seed: int) -> Fold:
    """Training and validation positions of the refit on all labelled samples.

    Parameters
    ----------
    units : ndarray of int, shape (n,)
        Assignment unit of each sample (the split's ``block`` column): a unit is never divided.
    cls : ndarray of int, shape (n,)
        Class of each sample.
    validation_share : float
        Target share of the samples in validation (``split.fractions.validation``); 0: none.
    seed : int
        Seed of the draw (``numpy.random.default_rng([seed, 29])``, apart from the split's own).

    Returns
    -------
    Fold
        ``train`` and ``validation`` partition ``range(n)`` (sorted); ``test`` is empty. A class
        held by one unit only stays in training.
    """
    n = len(units)
    everything = np.arange(n, dtype=np.int64)
    empty = np.zeros(0, dtype=np.int64)
    if validation_share <= 0 or n == 0:
        return Fold(everything, empty, empty)
    uid, unit_of = np.unique(np.asarray(units), return_inverse=True)
    cid, cls_of = np.unique(np.asarray(cls), return_inverse=True)
    C = np.zeros((uid.size, cid.size), dtype=np.int64)
    np.add.at(C, (unit_of, cls_of), 1)
    lab = assign_units(
        C, np.array([1.0 - validation_share, validation_share]), np.random.default_rng([seed, 29]), (TRAIN,)
    )
    val = lab[unit_of] == 1
    return Fold(everything[~val], everything[val], empty)

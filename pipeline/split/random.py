"""``split.strategy: random``: the stratified random pixel split, the contrast that is *expected*
to leak. Its audit is computed and reported, never enforced.

:func:`random_split` is also the runner's random contrast (``split.random_contrast``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.core.errors import InputError
from pipeline.split.assign import SPLIT_NAMES
from pipeline.split.settings import SplitFractions
from pipeline.split.summary import as_given
from pipeline.split.types import Fold, SplitInput, SplitResult

__all__ = ["random_split", "split_random"]


def random_split(samples: pd.DataFrame, fractions: SplitFractions, seed: int) -> Fold:
    """Stratified random pixel split (the leaky contrast).

    Per class (in class-id order) the samples are shuffled with
    ``numpy.random.default_rng(seed)`` and cut by the fractions: a class with
    at least two samples gets at least one test sample, and training keeps at
    least one sample of every class.

    Parameters
    ----------
    samples : DataFrame, n rows
        Needs ``class_id``.
    fractions : SplitFractions
    seed : int

    Returns
    -------
    Fold
        Sorted positions; ``len(train) + len(validation) + len(test) == n``.
    """
    if len(samples) == 0:
        raise InputError("split: there are no labelled samples to split; check the labels file and classes")
    rng = np.random.default_rng(seed)
    cid = samples["class_id"].to_numpy().astype(np.int64)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLIT_NAMES}
    for c in np.unique(cid):
        idx = np.flatnonzero(cid == c)
        idx = idx[rng.permutation(idx.size)]
        n = idx.size
        n_test = int(round(fractions.test * n))
        if n >= 2:
            n_test = max(1, n_test)
        n_test = min(n_test, n - 1)
        n_val = max(min(int(round(fractions.validation * n)), n - 1 - n_test), 0)
        parts["test"].append(idx[:n_test])
        parts["validation"].append(idx[n_test : n_test + n_val])
        parts["train"].append(idx[n_test + n_val :])
    cat = {s: np.sort(np.concatenate(v)).astype(np.int64) for s, v in parts.items()}
    return Fold(train=cat["train"], validation=cat["validation"], test=cat["test"])


def split_random(inp: SplitInput) -> SplitResult:
    """``random``: stratified random pixel split; audited and reported, never enforced."""
    fold = random_split(inp.samples, inp.cfg.fractions, inp.seed)
    labels = np.empty(inp.n, dtype=object)
    labels[fold.train], labels[fold.validation], labels[fold.test] = "train", "validation", "test"
    return as_given(inp, "random", labels.astype(str), {})

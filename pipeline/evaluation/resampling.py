"""Resampling independent units (spatial blocks, polygons): the draws behind every interval and
paired test of the run.

Pixels of one polygon or block look alike, so they are not independent replicates: the unit of
replication is the block (Roberts et al. 2017). Every figure with an uncertainty resamples whole
units with replacement, as many as there are, and recomputes the figure from the drawn units'
confusion matrices. :func:`resample_units` yields those resampled matrices for several
classifiers at once, **with the same draws for all of them**, which makes the comparison of two
classifiers a paired test (:func:`paired_difference`); :func:`holm` corrects a family of
p-values for multiplicity (Holm 1979).

References
----------
Roberts, D.R. et al. (2017). Cross-validation strategies for data with temporal, spatial,
hierarchical, or phylogenetic structure. Ecography 40, 913-929.
Holm, S. (1979). A simple sequentially rejective multiple test procedure. Scandinavian Journal
of Statistics 6, 65-70.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

#: Cells of one chunk of the (resamples x units) bootstrap weights (2**21: ~16 MB in float64).
BOOT_CHUNK_CELLS = 1 << 21


def unit_confusions(t: np.ndarray, p: np.ndarray, unit_idx: np.ndarray, n_units: int, q: int) -> np.ndarray:
    """One confusion matrix per unit.

    Parameters
    ----------
    t, p : ndarray of int, shape (n,)
        Reference and predicted class indices in 0..q-1.
    unit_idx : ndarray of int, shape (n,)
        Unit index of each pixel in 0..n_units-1.

    Returns
    -------
    ndarray of float64, shape (n_units, q * q)
        Row u is unit u's confusion matrix flattened (rows reference, columns predicted).
    """
    flat = (np.asarray(unit_idx) * q + t) * q + p
    return np.bincount(flat, minlength=n_units * q * q).reshape(n_units, q * q).astype(np.float64)


def resample_units(
    per_unit: Sequence[np.ndarray], n_boot: int, seed: int, chunk_cells: int = BOOT_CHUNK_CELLS
) -> Iterator[list[np.ndarray]]:
    """Bootstrap resamples of units, in chunks, the same draws for every array of ``per_unit``.

    Each resample draws as many units as there are, with replacement; a resample's value of an
    array is the sum of the drawn units' rows (a unit drawn twice counts twice).

    Parameters
    ----------
    per_unit : sequence of ndarray, each shape (n_units, m)
        Additive per-unit quantities (e.g. :func:`unit_confusions` of several classifiers).
    n_boot : int
        Number of resamples.
    seed : int
    chunk_cells : int
        Resamples go in chunks of about this many (resample, unit) cells, which bounds the
        memory whatever the number of units; the draws do not depend on it (the generator
        yields the same stream whether its draws are asked for at once or chunk by chunk).

    Yields
    ------
    list of ndarray, each shape (k, m)
        The next k resamples of every array, in the order of ``per_unit``.
    """
    n_units = int(per_unit[0].shape[0])
    if any(int(a.shape[0]) != n_units for a in per_unit):
        raise ValueError("every per-unit array must have one row per unit")
    rng = np.random.default_rng(seed)
    rows = max(1, min(n_boot, chunk_cells // max(n_units, 1)))
    for start in range(0, n_boot, rows):
        k = min(rows, n_boot - start)
        draws = rng.integers(0, n_units, size=(k, n_units))
        draws += (np.arange(k) * n_units)[:, None]  # row r's draws -> cells r * n_units + unit
        # integer counts, exact in float64: the sums equal resampling the pixels themselves
        weights = np.bincount(draws.ravel(), minlength=k * n_units).reshape(k, n_units).astype(np.float64)
        yield [weights @ a for a in per_unit]


def percentile_interval(values: np.ndarray, level: float = 0.95) -> list[float | None]:
    """The ``level`` percentile interval of bootstrap values; NaN resamples (a figure undefined
    in that resample) are left out; ``[None, None]`` when none is defined."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return [None, None]
    a = 100 * (1 - level) / 2
    return [float(np.percentile(v, a)), float(np.percentile(v, 100 - a))]


def paired_difference(boot_a: np.ndarray, boot_b: np.ndarray, observed: float | None) -> dict:
    """A paired bootstrap comparison of two classifiers' figure (the same resamples for both).

    Parameters
    ----------
    boot_a, boot_b : ndarray, shape (n_boot,)
        The figure of A and of B in each resample (same draws).
    observed : float or None
        A's figure minus B's on the full test set.

    Returns
    -------
    dict
        ``{"difference", "ci95": [lo, hi], "p_value"}``: the observed difference, the 95%
        percentile interval of the resampled differences, and the two-sided p-value of "no
        difference" found by inverting that interval: the smallest alpha at which the
        (1 - alpha) percentile interval excludes 0, ``2 * min(#{d <= 0} + 1, #{d >= 0} + 1) /
        (B + 1)`` capped at 1 (B: resamples where both figures are defined; the +1 keeps it from
        being 0 with finitely many resamples). ``None`` where undefined.
    """
    d = np.asarray(boot_a, dtype=np.float64) - np.asarray(boot_b, dtype=np.float64)
    d = d[np.isfinite(d)]
    if observed is None or not d.size:
        return {"difference": observed, "ci95": [None, None], "p_value": None}
    below, above = int(np.count_nonzero(d <= 0)), int(np.count_nonzero(d >= 0))
    p = min(1.0, 2.0 * (min(below, above) + 1) / (d.size + 1))
    return {"difference": float(observed), "ci95": percentile_interval(d), "p_value": p}


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's (1979) step-down adjusted p-values of one family of tests (``None`` stays ``None``
    and does not count as a test).

    The i-th smallest of m p-values is multiplied by ``m - i + 1`` (i from 1), the running
    maximum is taken so the adjusted values keep the order of the raw ones, and they are capped
    at 1. A test is rejected at level alpha when its adjusted p-value is below alpha; the chance
    of any false rejection in the family is then at most alpha.
    """
    idx = [i for i, p in enumerate(p_values) if p is not None]
    out: list[float | None] = [None] * len(p_values)
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: float(p_values[i]))):  # type: ignore[arg-type]
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))  # type: ignore[arg-type]
        out[i] = running
    return out

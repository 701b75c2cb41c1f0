"""Stratified estimators of accuracy and area (Olofsson et al. 2014) and class area tables.

:func:`area_adjusted` takes a sample-count matrix and the mapped area of each class;
:func:`area_adjusted_from_labels` builds that matrix from labelled points stratified by the map
(a run's test split, an analyst's sample); :func:`class_area_table` measures the mapped areas by
pixel counting (true ground areas in any CRS: :mod:`pipeline.evaluation.areas`).

Conventions
-----------
* The sample-count matrix given to :func:`area_adjusted` is rows = MAP class (the strata),
  columns = REFERENCE class, as in Olofsson et al. (2014, Table 8): the other way round from
  the confusion matrices of :func:`pipeline.evaluation.metrics.classification_metrics`.
* Everything returned is JSON-ready: plain ``float``/``int``/``list``/``dict``;
  undefined values (0/0) are ``None``.

Reference
---------
Olofsson, P., Foody, G.M., Herold, M., Stehman, S.V., Woodcock, C.E., Wulder, M.A.
(2014). Good practices for estimating area and assessing accuracy of land change.
Remote Sensing of Environment 148, 42-57. doi:10.1016/j.rse.2014.02.015
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

# sklearn.metrics is imported inside the function that uses it: it costs seconds at import and
# the CLI imports this module to register its subcommands.
from pipeline.core.errors import InputError
from pipeline.evaluation.metrics import encode_classes, json_float

Z95 = 1.96  # normal quantile used for every 95% half-width (as in Olofsson et al. 2014)


def area_adjusted(counts: np.ndarray, mapped_area: np.ndarray, class_names: list[str]) -> dict:
    """Stratified estimators of accuracy and area (Olofsson et al. 2014, eqs. 2-11).

    The map classes are the strata. With ``A_i`` the mapped area of class i,
    ``W_i = A_i / A_tot``, ``n_ij`` the sample counts and ``n_i`` their row sums:

    * ``p_ij = W_i n_ij / n_i`` (estimated area proportions);
    * overall accuracy ``O = sum_j p_jj``, ``V(O) = sum_i W_i^2 U_i (1-U_i) / (n_i - 1)``;
    * user's accuracy ``U_i = p_ii / p_i.``, ``V(U_i) = U_i (1-U_i) / (n_i - 1)``;
    * producer's accuracy ``P_j = p_jj / p_.j`` with the variance of eq. 7,
      ``V(P_j) = [A_j^2 (1-P_j)^2 U_j (1-U_j) / (n_j-1)
      + P_j^2 sum_{i!=j} A_i^2 (n_ij/n_i)(1 - n_ij/n_i) / (n_i-1)] / Â_j^2``
      where ``Â_j = sum_i A_i n_ij / n_i``;
    * area ``Â_j = A_tot p_.j``, ``SE(p_.j) = sqrt(sum_i (W_i p_ij - p_ij^2) / (n_i - 1))``,
      ``SE(Â_j) = A_tot SE(p_.j)``.

    Every ``_ci95`` is the half-width ``1.96 * SE``.

    Parameters
    ----------
    counts : ndarray, shape (q, q)
        Sample counts, rows = MAP class, columns = REFERENCE class.
    mapped_area : ndarray, shape (q,)
        Mapped area of each class in hectares (or any unit: areas come back in it).
    class_names : list of str, length q

    Returns
    -------
    dict
        ``{"overall_accuracy", "overall_accuracy_se", "overall_accuracy_ci95",
        "n_samples", "total_area_ha", "notes": [str],
        "proportions": [[float]] (q x q, rows map, columns reference),
        "classes": {name: {"n_samples", "mapped_area_ha", "area_ha", "area_se_ha",
        "area_ci95_ha", "users_accuracy", "users_accuracy_se", "users_accuracy_ci95",
        "producers_accuracy", "producers_accuracy_se", "producers_accuracy_ci95"}}}``.
        Undefined values are ``None`` and explained in ``notes``: a map class
        with area but no sample leaves its stratum out of every estimate (the
        estimates then cover only the sampled strata); a stratum with one sample
        has no variance estimate; a class that no sample shows in the reference
        has no area estimate (not 0: the sample says nothing about it).
        The variances assume a (stratified) random sample of independent points;
        :func:`unit_intervals` gives intervals for a clustered sample.
    """
    n = np.asarray(counts, dtype=np.float64)
    area = np.asarray(mapped_area, dtype=np.float64).ravel()
    q = len(class_names)
    if n.shape != (q, q):
        raise InputError(f"the error matrix is {n.shape}, expected {q} x {q} for classes {list(class_names)}")
    if area.shape != (q,):
        raise InputError(f"{area.size} mapped areas given for {q} classes")
    if (n < 0).any() or (area < 0).any():
        raise InputError("sample counts and mapped areas must not be negative")
    a_tot = area.sum()
    if a_tot <= 0:
        raise InputError("the mapped areas add up to 0")
    notes: list[str] = []
    w = area / a_tot
    n_i = n.sum(axis=1)
    sampled = n_i > 0
    for i in np.flatnonzero(~sampled & (w > 0)):
        notes.append(
            f"map class {class_names[i]!r} ({100 * w[i]:.3g}% of the mapped area) has no sample: "
            "its stratum is left out of every estimate, and its user's accuracy is undefined"
        )
    for i in np.flatnonzero(n_i == 1):
        notes.append(f"map class {class_names[i]!r} has a single sample: its variances are undefined")
    dof = np.where(n_i > 1, n_i - 1.0, np.nan)  # n_i - 1; NaN marks an undefined variance

    def _div(x: np.ndarray, d: np.ndarray) -> np.ndarray:
        # x / d, but a zero term stays 0 even where d is undefined (no sample or one sample)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(x == 0, 0.0, x / d)

    f = np.zeros_like(n)
    f[sampled] = n[sampled] / n_i[sampled, None]  # n_ij / n_i
    p = w[:, None] * f  # p_ij
    u = np.where(sampled, np.diag(f), np.nan)  # user's accuracy
    u0 = np.nan_to_num(u)
    oa = float(np.trace(p))
    oa_var = float(_div(w**2 * u0 * (1 - u0), dof).sum())
    u_var = np.where(sampled, _div(u0 * (1 - u0), dof), np.nan)
    p_col = p.sum(axis=0)  # p_.j
    a_hat = (area[:, None] * f).sum(axis=0)  # estimated area of each reference class
    with np.errstate(invalid="ignore", divide="ignore"):
        prod = np.where(p_col > 0, np.diag(p) / p_col, np.nan)  # producer's accuracy
    cell_var = _div(area[:, None] ** 2 * f * (1 - f), dof[:, None])  # A_i^2 f_ij (1-f_ij) / (n_i-1)
    prod_var = np.full(q, np.nan)
    for j in range(q):
        if not (a_hat[j] > 0):
            continue
        others = cell_var[:, j].sum() - cell_var[j, j]
        t1 = _div(np.array(area[j] ** 2 * (1 - prod[j]) ** 2 * u0[j] * (1 - u0[j])), np.array(dof[j]))
        prod_var[j] = (float(t1) + prod[j] ** 2 * others) / a_hat[j] ** 2
    p_col_se = np.sqrt(_div(w[:, None] * p - p**2, dof[:, None]).sum(axis=0))
    # A class no sample shows in the reference: the sample says nothing about its area (the
    # formula's 0 +- 0 would be read as "measured absent" while the map may show hectares of it).
    no_ref = n.sum(axis=0) == 0
    for j in (np.flatnonzero(no_ref) if sampled.any() else np.empty(0, np.int64)).tolist():
        mapped = f" (the map shows {area[j]:,.1f} ha of it)" if area[j] > 0 else ""
        notes.append(
            f"no sample has reference class {class_names[j]!r}: its area and producer's accuracy are not "
            f"estimable{mapped}"
        )
    oa_se = math.sqrt(oa_var) if np.isfinite(oa_var) else float("nan")
    classes = {}
    for k, name in enumerate(class_names):
        u_se = math.sqrt(u_var[k]) if np.isfinite(u_var[k]) else float("nan")
        p_se = math.sqrt(prod_var[k]) if np.isfinite(prod_var[k]) else float("nan")
        classes[name] = {
            "n_samples": int(n_i[k]),
            "mapped_area_ha": float(area[k]),
            "area_ha": None if no_ref[k] else json_float(a_tot * p_col[k]),
            "area_se_ha": None if no_ref[k] else json_float(a_tot * p_col_se[k]),
            "area_ci95_ha": None if no_ref[k] else json_float(Z95 * a_tot * p_col_se[k]),
            "users_accuracy": json_float(u[k]),
            "users_accuracy_se": json_float(u_se),
            "users_accuracy_ci95": json_float(Z95 * u_se),
            "producers_accuracy": json_float(prod[k]),
            "producers_accuracy_se": json_float(p_se),
            "producers_accuracy_ci95": json_float(Z95 * p_se),
        }
    if not sampled.any():
        notes.append("the sample is empty: nothing can be estimated")
    return {
        "overall_accuracy": json_float(oa) if sampled.any() else None,
        "overall_accuracy_se": json_float(oa_se) if sampled.any() else None,
        "overall_accuracy_ci95": json_float(Z95 * oa_se) if sampled.any() else None,
        "n_samples": int(n.sum()),
        "total_area_ha": float(a_tot),
        "proportions": [[float(v) for v in row] for row in p],
        "classes": classes,
        "notes": notes,
    }


def olofsson_estimates(counts: np.ndarray, mapped_area: np.ndarray) -> dict[str, np.ndarray]:
    """The point estimates of :func:`area_adjusted` for a stack of sample-count matrices at once.

    Parameters
    ----------
    counts : ndarray, shape (k, q, q)
        Sample counts, rows = MAP class, columns = REFERENCE class.
    mapped_area : ndarray, shape (q,)

    Returns
    -------
    dict
        ``"overall_accuracy"`` (k,), ``"users_accuracy"``, ``"producers_accuracy"`` and
        ``"area_ha"`` (k, q); NaN where undefined (no sample at all; a user's accuracy of an
        unsampled stratum; a producer's accuracy of a class with estimated area 0).
    """
    n = np.asarray(counts, dtype=np.float64)
    area = np.asarray(mapped_area, dtype=np.float64)
    a_tot = area.sum()
    w = area / a_tot
    n_i = n.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(n_i[..., None] > 0, n / np.where(n_i > 0, n_i, 1.0)[..., None], 0.0)
        p = w[None, :, None] * f
        diag_p = np.diagonal(p, axis1=-2, axis2=-1)
        p_col = p.sum(axis=-2)
        oa = np.where(n_i.sum(axis=-1) > 0, diag_p.sum(axis=-1), np.nan)
        ua = np.where(n_i > 0, np.diagonal(f, axis1=-2, axis2=-1), np.nan)
        pa = np.where(p_col > 0, diag_p / np.where(p_col > 0, p_col, 1.0), np.nan)
    return {"overall_accuracy": oa, "users_accuracy": ua, "producers_accuracy": pa, "area_ha": a_tot * p_col}


def unit_intervals(
    y_ref: np.ndarray,
    y_map: np.ndarray,
    units: np.ndarray,
    mapped_area: np.ndarray,
    class_ids: list[int],
    class_names: list[str],
    n_boot: int = 2000,
    seed: int = 0,
    unit: str = "block",
) -> dict[str, Any]:
    """95% intervals of the area-adjusted estimates for a clustered sample: resample whole units.

    The half-widths of :func:`area_adjusted` assume independent sample points. The run's test
    pixels come in polygons and blocks, so they are far from independent: here whole units are
    drawn with replacement (the draws of every other interval of the run with this seed,
    :mod:`pipeline.evaluation.resampling`), the estimates recomputed on each resample, and the
    2.5 and 97.5 percentiles taken.

    Parameters
    ----------
    y_ref, y_map : array-like of int, shape (n,)
        Reference and map class ids of the sample.
    units : array-like, shape (n,)
        Unit (block) of every sample point.
    mapped_area : ndarray, shape (q,)
        Mapped area of each class (the strata sizes).

    Returns
    -------
    dict
        ``{"unit", "n_units", "n_boot", "overall_accuracy": [lo, hi],
        "classes": {name: {"area_ha", "users_accuracy", "producers_accuracy": [lo, hi]}}}``;
        ``[None, None]`` where not estimable (a class no sample shows in the reference has no
        area or producer's accuracy interval).
    """
    from pipeline.evaluation.resampling import percentile_interval, resample_units, unit_confusions

    q = len(class_ids)
    t = encode_classes(y_ref, list(class_ids), "reference labels")
    m = encode_classes(y_map, list(class_ids), "map labels")
    u_ids, u_idx = np.unique(np.asarray(units).ravel(), return_inverse=True)
    out: dict[str, Any] = {"unit": unit, "n_units": int(u_ids.size), "n_boot": int(n_boot)}
    none = [None, None]
    if not t.size or float(np.sum(mapped_area)) <= 0:
        out["overall_accuracy"] = none
        out["classes"] = {
            name: dict.fromkeys(("area_ha", "users_accuracy", "producers_accuracy"), none) for name in class_names
        }
        return out
    per_unit = unit_confusions(m, t, u_idx, int(u_ids.size), q)  # rows map, columns reference
    no_ref = np.bincount(t, minlength=q) == 0
    est: dict[str, list[np.ndarray]] = {}
    for (cms,) in resample_units([per_unit], n_boot, seed):
        for k, v in olofsson_estimates(cms.reshape(-1, q, q), np.asarray(mapped_area)).items():
            est.setdefault(k, []).append(v)
    boot = {k: np.concatenate(v) for k, v in est.items()}
    out["overall_accuracy"] = percentile_interval(boot["overall_accuracy"])
    out["classes"] = {
        name: {
            "area_ha": none if no_ref[j] else percentile_interval(boot["area_ha"][:, j]),
            "users_accuracy": percentile_interval(boot["users_accuracy"][:, j]),
            "producers_accuracy": none if no_ref[j] else percentile_interval(boot["producers_accuracy"][:, j]),
        }
        for j, name in enumerate(class_names)
    }
    return out


def area_adjusted_from_labels(
    y_ref: np.ndarray,
    y_map: np.ndarray,
    map_pixel_counts: Mapping[int, int],
    pixel_area_ha: float,
    class_ids: list[int],
    class_names: list[str],
    map_area_ha: Mapping[int, float] | None = None,
) -> dict:
    """:func:`area_adjusted` from labelled points, stratified by the map.

    Used for the run's test split (post-stratified by the predicted class: the
    test split is not a stratified random sample of the map, so the estimates
    treat it as a sample within each map class) and for analysts' samples.

    Parameters
    ----------
    y_ref : array-like of int, shape (n,)
        Reference class ids.
    y_map : array-like of int, shape (n,)
        Map class ids at the same points.
    map_pixel_counts : mapping class id -> int
        Pixels of each class in the whole map (missing ids count 0).
    pixel_area_ha : float
        Area of one pixel in hectares (the mean pixel area when ``map_area_ha`` is given).
    class_ids, class_names : lists of length q
    map_area_ha : mapping class id -> hectares, optional
        Mapped area of each class measured on the ground (e.g. per-row pixel areas of a
        geographic grid); replaces ``map_pixel_counts * pixel_area_ha`` as the strata sizes.

    Returns
    -------
    dict
        As :func:`area_adjusted`, plus ``"pixel_area_ha"``.
    """
    from sklearn.metrics import confusion_matrix

    y_ref = np.asarray(y_ref).ravel()
    y_map = np.asarray(y_map).ravel()
    if y_ref.shape != y_map.shape:
        raise ValueError(f"y_ref has {y_ref.size} values, y_map {y_map.size}")
    labels = list(class_ids)
    encode_classes(y_ref, labels, "reference labels")
    encode_classes(y_map, labels, "map labels")
    counts = (
        confusion_matrix(y_map, y_ref, labels=labels) if y_ref.size else np.zeros((len(labels), len(labels)), dtype=int)
    )  # rows = map, columns = reference
    if map_area_ha is not None:
        areas = np.array([float(map_area_ha.get(c, 0.0)) for c in labels])
    else:
        areas = np.array([float(map_pixel_counts.get(c, 0)) * pixel_area_ha for c in labels])
    out = area_adjusted(counts, areas, list(class_names))
    out["pixel_area_ha"] = float(pixel_area_ha)
    return out


def class_area_table(
    map_path: str | Path, class_ids: list[int], class_names: list[str], nodata: int = 255
) -> dict[str, dict]:
    """Mapped area of every class by pixel counting.

    Parameters
    ----------
    map_path : path
        Class map (projected CRS, or geographic: pixel areas per row on the ellipsoid),
        read window by window.
    class_ids, class_names : lists of length q
    nodata : int

    Returns
    -------
    dict
        ``{name: {"pixels": int, "area_ha": float, "fraction": float}}``; the
        fraction is of all classified (non-nodata) pixels whose value is a class.
    """
    from pipeline.evaluation.areas import class_pixels_and_areas

    # true ground areas: per-row pixel areas on the ellipsoid in a geographic CRS
    counts, area_ha = class_pixels_and_areas(map_path, nodata)
    return area_table_from_counts(counts, area_ha, class_ids, class_names)


def area_table_from_counts(
    counts: Mapping[int, int], area_ha: Mapping[int, float], class_ids: list[int], class_names: list[str]
) -> dict[str, dict]:
    """:func:`class_area_table` from the pixel counts and areas already made (``areas.class_pixels_and_areas``)."""
    total = sum(counts.get(c, 0) for c in class_ids)
    return {
        name: {
            "pixels": int(counts.get(c, 0)),
            "area_ha": float(area_ha.get(c, 0.0)),
            "fraction": float(counts.get(c, 0) / total) if total else 0.0,
        }
        for c, name in zip(class_ids, class_names)
    }

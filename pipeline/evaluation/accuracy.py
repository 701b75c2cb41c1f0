"""Accuracy assessment: per-pixel metrics, block-bootstrap intervals, McNemar tests,
and the stratified area-adjusted estimators of Olofsson et al. (2014).

Conventions
-----------
* Confusion matrices of :func:`classification_metrics` have rows = reference
  (``y_true``) and columns = predicted, in the order of ``class_ids``.
* The sample-count matrix given to :func:`area_adjusted` is the other way round,
  as in Olofsson et al. (2014, Table 8): rows = MAP class (the strata), columns =
  REFERENCE class.
* Everything returned is JSON-ready: plain ``float``/``int``/``list``/``dict``;
  undefined values (0/0) are ``None``.

Reference
---------
Olofsson, P., Foody, G.M., Herold, M., Stehman, S.V., Woodcock, C.E., Wulder, M.A.
(2014). Good practices for estimating area and assessing accuracy of land change.
Remote Sensing of Environment 148, 42-57. doi:10.1016/j.rse.2014.02.015
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# scipy.stats and sklearn.metrics are imported inside the functions that use them: they cost
# seconds at import and the CLI imports this module to register its subcommands.
from pipeline.core.errors import InputError

Z95 = 1.96  # normal quantile used for every 95% half-width (as in Olofsson et al. 2014)
EXACT_MCNEMAR_BELOW = 25  # discordant pairs below which McNemar uses the exact binomial test
#: Cells of one chunk of the (resamples x blocks) bootstrap weights (2**21: ~16 MB in float64).
BOOT_CHUNK_CELLS = 1 << 21


# ---------------------------------------------------------------------------- helpers
def _num(x: Any) -> float | None:
    """``float(x)``, or ``None`` when ``x`` is NaN/inf (JSON has no NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _encode(y: np.ndarray, class_ids: Sequence[int], what: str) -> np.ndarray:
    """Map class ids to 0..q-1 indices; unknown ids raise ``ValueError``."""
    y = np.asarray(y).astype(np.int64, copy=False).ravel()
    ids = np.asarray(list(class_ids), dtype=np.int64)
    order = np.argsort(ids)
    pos = np.searchsorted(ids[order], y)
    pos = np.clip(pos, 0, len(ids) - 1)
    ok = ids[order][pos] == y
    if not ok.all():
        bad = sorted(set(y[~ok].tolist()))[:5]
        raise ValueError(f"{what} holds class ids {bad} that are not in class_ids {list(class_ids)}")
    return order[pos]


def _scores_from_cm(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overall accuracy, Cohen's kappa and macro-F1 of a stack of confusion matrices.

    Parameters
    ----------
    cm : ndarray, shape (..., q, q)
        Counts, rows reference, columns predicted.

    Returns
    -------
    oa, kappa, macro_f1 : ndarray, shape (...)
        NaN where undefined (empty matrix; kappa when expected agreement is 1).
        Macro-F1 averages over the classes present in the reference or the
        prediction (row sum + column sum > 0).
    """
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum(axis=(-2, -1))
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    rows = cm.sum(axis=-1)
    cols = cm.sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        po = tp.sum(axis=-1) / n
        pe = (rows * cols).sum(axis=-1) / (n * n)
        kappa = (po - pe) / (1.0 - pe)
        kappa = np.where(np.isclose(pe, 1.0), np.nan, kappa)
        denom = rows + cols
        present = denom > 0
        f1 = np.where(present, 2.0 * tp / np.where(present, denom, 1.0), 0.0)
        macro = f1.sum(axis=-1) / present.sum(axis=-1)
    return po, kappa, macro


# ---------------------------------------------------------------------------- metrics
def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, class_ids: list[int], class_names: list[str]
) -> dict:
    """Per-pixel accuracy metrics of one classifier on one sample.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
        Reference and predicted class ids.
    class_ids : list of int, length q
        Every class of the legend; fixes the order of matrices and tables.
        Classes absent from both arrays still appear (support 0, scores ``None``).
    class_names : list of str, length q
        Names in the same order.

    Returns
    -------
    dict
        ``{"overall_accuracy", "kappa", "macro_f1",
        "per_class": {name: {"precision", "recall", "f1", "support"}},
        "confusion_matrix": {"labels": [names], "matrix": [[int]] (q x q)},
        "confusion_matrix_normalized": {"labels", "matrix": [[float]]}}``.
        Matrices have rows = reference, columns = predicted (scikit-learn's
        ``confusion_matrix(labels=class_ids)``); the normalised one divides each
        row by its total (a row with no reference pixels is all ``None``). Precision
        is the user's accuracy, recall the producer's accuracy (per pixel,
        unweighted). Undefined is ``None``, never 0: the precision of a class never
        predicted, the recall of a class with no reference pixels, the F1 of a
        class absent from both (a class with reference pixels that is never
        predicted has recall 0 and F1 0). ``macro_f1`` averages F1 over the classes
        whose F1 is defined.
    """
    from sklearn.metrics import confusion_matrix

    if len(class_ids) != len(class_names):
        raise ValueError("class_ids and class_names differ in length")
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} values, y_pred {y_pred.size}")
    labels = list(class_ids)
    cm = confusion_matrix(y_true, y_pred, labels=labels) if y_true.size else np.zeros((len(labels),) * 2, int)
    oa, kappa, macro = _scores_from_cm(cm)
    tp, ref, pred = np.diag(cm).astype(float), cm.sum(axis=1).astype(float), cm.sum(axis=0).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 -> NaN -> None: undefined, not 0
        precision, recall, f1 = tp / pred, tp / ref, 2 * tp / (ref + pred)
        norm = cm / ref[:, None]
    names = list(class_names)
    return {
        "overall_accuracy": _num(oa),
        "kappa": _num(kappa),
        "macro_f1": _num(macro),
        "per_class": {
            name: {
                "precision": _num(precision[k]),
                "recall": _num(recall[k]),
                "f1": _num(f1[k]),
                "support": int(ref[k]),
            }
            for k, name in enumerate(names)
        },
        "confusion_matrix": {"labels": names, "matrix": cm.astype(int).tolist()},
        "confusion_matrix_normalized": {"labels": names, "matrix": [[_num(v) for v in row] for row in norm]},
    }


#: A confidence layer with at most this many distinct values on the test pixels cannot rank pixels.
DEGENERATE_LEVELS = 2


def confidence_summary(confidence: np.ndarray, correct: np.ndarray) -> dict:
    """Does a model's confidence say which of its test pixels are right?

    Parameters
    ----------
    confidence : array of float, shape (n,), the model's confidence for its prediction of each test pixel.
    correct : array of bool, shape (n,), whether that prediction equals the reference.

    Returns
    -------
    dict
        ``{"levels", "degenerate", "mean_correct", "mean_wrong", "auc"}``: the number of
        distinct (finite) values, whether that is at most :data:`DEGENERATE_LEVELS` (the layer is
        constant or two-valued and does not rank pixels), the mean confidence of right and of
        wrong predictions, and the ROC AUC of confidence for telling right from wrong (0.5:
        no better than chance). Undefined values are ``None``.
    """
    from sklearn.metrics import roc_auc_score

    conf = np.asarray(confidence, dtype=np.float64).ravel()
    ok = np.asarray(correct, dtype=bool).ravel()
    keep = np.isfinite(conf)
    conf, ok = conf[keep], ok[keep]
    levels = int(len(np.unique(conf)))
    both = ok.any() and (~ok).any()
    return {
        "levels": levels,
        "degenerate": levels <= DEGENERATE_LEVELS,
        "mean_correct": _num(conf[ok].mean()) if ok.any() else None,
        "mean_wrong": _num(conf[~ok].mean()) if (~ok).any() else None,
        "auc": _num(roc_auc_score(ok, conf)) if both else None,
    }


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    blocks: np.ndarray,
    class_ids: list[int],
    n_boot: int = 1000,
    seed: int = 0,
    chunk_cells: int = BOOT_CHUNK_CELLS,
) -> dict:
    """95% percentile intervals of OA, kappa and macro-F1 by resampling spatial blocks.

    Whole blocks are drawn with replacement (as many as there are blocks), so
    the spatial autocorrelation inside a block is kept and the interval is not
    the over-narrow pixel bootstrap. Vectorised: one confusion matrix per block,
    then every resample is the block matrices weighted by its draw counts.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
    blocks : array-like, shape (n,)
        Spatial block id of each pixel.
    class_ids : list of int, length q
    n_boot : int
        Number of resamples.
    seed : int
    chunk_cells : int
        Resamples are drawn in chunks of about this many (resample, block) cells, which
        bounds the memory (a few times 8 bytes per cell) whatever the number of blocks;
        the result does not depend on it.

    Returns
    -------
    dict
        ``{"overall_accuracy": [lo, hi], "kappa": [lo, hi], "macro_f1": [lo, hi],
        "n_blocks": int, "n_boot": int}``; bounds are the 2.5 and 97.5
        percentiles (resamples where a score is undefined are ignored; ``None``
        if none is defined).
    """
    q = len(class_ids)
    t = _encode(y_true, class_ids, "y_true")
    p = _encode(y_pred, class_ids, "y_pred")
    b = np.asarray(blocks).ravel()
    if not (t.size == p.size == b.size):
        raise ValueError("y_true, y_pred and blocks must have the same length")
    out: dict[str, Any] = {"n_boot": int(n_boot)}
    if t.size == 0:
        out.update(overall_accuracy=[None, None], kappa=[None, None], macro_f1=[None, None], n_blocks=0)
        return out
    _, b_idx = np.unique(b, return_inverse=True)
    n_blocks = int(b_idx.max()) + 1
    flat = (b_idx * q + t) * q + p
    per_block = np.bincount(flat, minlength=n_blocks * q * q).reshape(n_blocks, q * q).astype(np.float64)
    rng = np.random.default_rng(seed)
    # Resamples go in chunks of rows so the (resamples x blocks) draws and weights stay near
    # chunk_cells cells: with one block per test pixel (a random split) a single 1000-row matrix
    # grew by ~24 KB per test pixel. The generator yields the same stream whether its draws are
    # asked for at once or row chunk by row chunk, and the weights are integer counts (exact in
    # float64), so the intervals are identical to the unchunked computation for the same seed.
    rows = max(1, min(n_boot, chunk_cells // n_blocks))
    cms = np.empty((n_boot, q * q))
    for start in range(0, n_boot, rows):
        k = min(rows, n_boot - start)
        draws = rng.integers(0, n_blocks, size=(k, n_blocks))
        draws += (np.arange(k) * n_blocks)[:, None]  # row r's draws -> cells r * n_blocks + block
        weights = np.bincount(draws.ravel(), minlength=k * n_blocks).reshape(k, n_blocks).astype(np.float64)
        cms[start : start + k] = weights @ per_block
    oa, kappa, macro = _scores_from_cm(cms.reshape(n_boot, q, q))
    for key, vals in (("overall_accuracy", oa), ("kappa", kappa), ("macro_f1", macro)):
        vals = vals[np.isfinite(vals)]
        out[key] = [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))] if vals.size else [None, None]
    out["n_blocks"] = n_blocks
    return {k: out[k] for k in ("overall_accuracy", "kappa", "macro_f1", "n_blocks", "n_boot")}


# ---------------------------------------------------------------------------- McNemar
def mcnemar(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict:
    """McNemar's test of two classifiers on the same pixels.

    ``n01`` counts pixels that A gets right and B wrong, ``n10`` those A gets
    wrong and B right; only these discordant pixels carry information.

    * ``n01 + n10 == 0``: statistic 0, p-value 1.
    * ``n01 + n10 < 25``: exact two-sided binomial test of ``n01`` out of
      ``n01 + n10`` with p = 1/2; ``statistic`` is ``min(n01, n10)``.
    * otherwise: chi-square with continuity correction,
      ``(|n01 - n10| - 1)^2 / (n01 + n10)`` on 1 degree of freedom.

    Parameters
    ----------
    y_true, pred_a, pred_b : array-like, shape (n,)

    Returns
    -------
    dict
        ``{"statistic": float, "p_value": float, "n01": int, "n10": int}``
    """
    from scipy import stats

    y = np.asarray(y_true).ravel()
    a_ok = np.asarray(pred_a).ravel() == y
    b_ok = np.asarray(pred_b).ravel() == y
    n01 = int(np.count_nonzero(a_ok & ~b_ok))
    n10 = int(np.count_nonzero(~a_ok & b_ok))
    n = n01 + n10
    if n == 0:
        stat, pval = 0.0, 1.0
    elif n < EXACT_MCNEMAR_BELOW:
        stat = float(min(n01, n10))
        pval = float(stats.binomtest(n01, n, 0.5, alternative="two-sided").pvalue)
    else:
        stat = (abs(n01 - n10) - 1.0) ** 2 / n
        pval = float(stats.chi2.sf(stat, df=1))
    return {"statistic": float(stat), "p_value": min(1.0, float(pval)), "n01": n01, "n10": n10}


def pairwise_mcnemar(y_true: np.ndarray, preds: Mapping[str, np.ndarray]) -> list[dict]:
    """McNemar's test for every pair of models (in the mapping's order).

    Parameters
    ----------
    y_true : array-like, shape (n,)
    preds : mapping model name -> array-like, shape (n,)
        Predictions of every model on the same pixels, in the same order.

    Returns
    -------
    list of dict
        ``[{"a", "b", "statistic", "p_value", "n01", "n10"}]`` for each pair a < b.
    """
    out = []
    for a, b in itertools.combinations(list(preds), 2):
        r = mcnemar(y_true, preds[a], preds[b])
        out.append({"a": a, "b": b, **r})
    return out


# ---------------------------------------------------------------------------- Olofsson
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
        has no variance estimate.
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
    for j in range(q):
        if not (p_col[j] > 0) and sampled.any():
            notes.append(f"no sample has reference class {class_names[j]!r}: its producer's accuracy is undefined")
    oa_se = math.sqrt(oa_var) if np.isfinite(oa_var) else float("nan")
    classes = {}
    for k, name in enumerate(class_names):
        u_se = math.sqrt(u_var[k]) if np.isfinite(u_var[k]) else float("nan")
        p_se = math.sqrt(prod_var[k]) if np.isfinite(prod_var[k]) else float("nan")
        classes[name] = {
            "n_samples": int(n_i[k]),
            "mapped_area_ha": float(area[k]),
            "area_ha": _num(a_tot * p_col[k]),
            "area_se_ha": _num(a_tot * p_col_se[k]),
            "area_ci95_ha": _num(Z95 * a_tot * p_col_se[k]),
            "users_accuracy": _num(u[k]),
            "users_accuracy_se": _num(u_se),
            "users_accuracy_ci95": _num(Z95 * u_se),
            "producers_accuracy": _num(prod[k]),
            "producers_accuracy_se": _num(p_se),
            "producers_accuracy_ci95": _num(Z95 * p_se),
        }
    if not sampled.any():
        notes.append("the sample is empty: nothing can be estimated")
    return {
        "overall_accuracy": _num(oa) if sampled.any() else None,
        "overall_accuracy_se": _num(oa_se) if sampled.any() else None,
        "overall_accuracy_ci95": _num(Z95 * oa_se) if sampled.any() else None,
        "n_samples": int(n.sum()),
        "total_area_ha": float(a_tot),
        "proportions": [[float(v) for v in row] for row in p],
        "classes": classes,
        "notes": notes,
    }


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
    _encode(y_ref, labels, "reference labels")
    _encode(y_map, labels, "map labels")
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


def assess_model(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    blocks: np.ndarray,
    class_ids: list[int],
    class_names: list[str],
    map_path: str | Path | list[str | Path] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    nodata: int = 255,
) -> dict:
    """Everything ``metrics.json`` holds for one model, from its test-split predictions.

    Parameters
    ----------
    y_true, y_pred, blocks : array-like, shape (n,)
        Columns of ``eval/<model>.parquet``.
    class_ids, class_names : lists of length q
    map_path : path or list of paths, optional
        The model's class map (or the maps of all scenes, pooled); when given, adds ``"class_areas"`` (pixel
        counting) and ``"area_adjusted"`` (test split stratified by the map).

    Returns
    -------
    dict
        :func:`classification_metrics` plus ``"ci95"`` (:func:`bootstrap_ci`)
        and, with a map, ``"class_areas"`` and ``"area_adjusted"``.
    """
    out = classification_metrics(y_true, y_pred, class_ids, class_names)
    out["ci95"] = bootstrap_ci(y_true, y_pred, blocks, class_ids, n_boot=n_boot, seed=seed)
    if map_path is not None:
        from pipeline.evaluation.areas import class_pixels_and_areas

        counts: dict[int, int] = {}
        area_ha: dict[int, float] = {}
        # Several maps (the scenes of a run) pool their pixels: one map area, one stratification.
        for path in map_path if isinstance(map_path, (list, tuple)) else [map_path]:
            c, a = class_pixels_and_areas(path, nodata)  # each map is read once
            for k, v in c.items():
                counts[k] = counts.get(k, 0) + v
            for k, ha in a.items():
                area_ha[k] = area_ha.get(k, 0.0) + ha
        out["class_areas"] = area_table_from_counts(counts, area_ha, class_ids, class_names)
        n_px = sum(counts.values())
        out["area_adjusted"] = area_adjusted_from_labels(
            y_true,
            y_pred,
            counts,
            sum(area_ha.values()) / n_px if n_px else 0.0,
            class_ids,
            class_names,
            map_area_ha=area_ha,
        )
    return out

"""Per-pixel accuracy metrics of classifiers on a sample: overall accuracy, kappa, macro-F1 and
per-class scores (:func:`classification_metrics`), whether confidence ranks right above wrong
(:func:`confidence_summary`), block-bootstrap intervals (:func:`bootstrap_ci`) and McNemar tests
between models (:func:`mcnemar`, :func:`pairwise_mcnemar`).

A new metric is added here: in :func:`classification_metrics` (and in :func:`bootstrap_ci`
when it needs an interval); :func:`pipeline.evaluation.accuracy.assess_model` puts it in
``metrics.json``. The stratified area estimators live in
:mod:`pipeline.evaluation.area_estimates`.

Conventions
-----------
* Confusion matrices of :func:`classification_metrics` have rows = reference
  (``y_true``) and columns = predicted, in the order of ``class_ids``.
* Everything returned is JSON-ready: plain ``float``/``int``/``list``/``dict``;
  undefined values (0/0) are ``None``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# scipy.stats and sklearn.metrics are imported inside the functions that use them: they cost
# seconds at import and the CLI imports this module to register its subcommands.

EXACT_MCNEMAR_BELOW = 25  # discordant pairs below which McNemar uses the exact binomial test
#: Cells of one chunk of the (resamples x blocks) bootstrap weights (2**21: ~16 MB in float64).
BOOT_CHUNK_CELLS = 1 << 21


# ---------------------------------------------------------------------------- helpers
def json_float(x: Any) -> float | None:
    """``float(x)``, or ``None`` when ``x`` is NaN/inf (JSON has no NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def encode_classes(y: np.ndarray, class_ids: Sequence[int], what: str) -> np.ndarray:
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
        "overall_accuracy": json_float(oa),
        "kappa": json_float(kappa),
        "macro_f1": json_float(macro),
        "per_class": {
            name: {
                "precision": json_float(precision[k]),
                "recall": json_float(recall[k]),
                "f1": json_float(f1[k]),
                "support": int(ref[k]),
            }
            for k, name in enumerate(names)
        },
        "confusion_matrix": {"labels": names, "matrix": cm.astype(int).tolist()},
        "confusion_matrix_normalized": {"labels": names, "matrix": [[json_float(v) for v in row] for row in norm]},
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
        "mean_correct": json_float(conf[ok].mean()) if ok.any() else None,
        "mean_wrong": json_float(conf[~ok].mean()) if (~ok).any() else None,
        "auc": json_float(roc_auc_score(ok, conf)) if both else None,
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
    t = encode_classes(y_true, class_ids, "y_true")
    p = encode_classes(y_pred, class_ids, "y_pred")
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

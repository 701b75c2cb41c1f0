"""Accuracy metrics of classifiers on a sample: overall accuracy, kappa, macro-F1 and per-class
scores (:func:`classification_metrics`), whether confidence ranks right above wrong
(:func:`confidence_summary`) and their intervals by resampling spatial blocks
(:func:`bootstrap_ci`; the draws, paired tests between models and the Holm correction are in
:mod:`pipeline.evaluation.resampling` and :mod:`pipeline.evaluation.comparison`).

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
* Macro-F1 (:data:`MACRO_F1_CONVENTION`) averages the F1 of the legend's classes that have test
  support (reference pixels); a class only predicted, never in the reference, is left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.evaluation.resampling import BOOT_CHUNK_CELLS, percentile_interval, resample_units, unit_confusions

# sklearn.metrics is imported inside the functions that use it: it costs seconds at import and
# the CLI imports this module to register its subcommands.

#: How macro-F1 is averaged (metrics.json and the report state it).
MACRO_F1_CONVENTION = (
    "mean of the per-class F1 over the legend classes with test support (reference pixels > 0); "
    "classes without test pixels are left out, a class with test pixels that is never predicted counts 0"
)


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


def confusion_scores(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overall accuracy, Cohen's kappa and macro-F1 of a stack of confusion matrices.

    Parameters
    ----------
    cm : ndarray, shape (..., q, q)
        Counts, rows reference, columns predicted.

    Returns
    -------
    oa, kappa, macro_f1 : ndarray, shape (...)
        NaN where undefined (empty matrix; kappa when expected agreement is 1).
        Macro-F1 averages over the classes with support (row sum > 0, see
        :data:`MACRO_F1_CONVENTION`): a class only predicted adds no term.
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
        supported = rows > 0
        f1 = np.where(supported, 2.0 * tp / np.where(supported, rows + cols, 1.0), 0.0)
        macro = f1.sum(axis=-1) / supported.sum(axis=-1)
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
        predicted, the recall and the F1 of a class with no reference pixels (a class
        with reference pixels that is never predicted has recall 0 and F1 0).
        ``macro_f1`` averages F1 over the classes with reference pixels
        (:data:`MACRO_F1_CONVENTION`), the classes whose F1 is defined.
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
    oa, kappa, macro = confusion_scores(cm)
    tp, ref, pred = np.diag(cm).astype(float), cm.sum(axis=1).astype(float), cm.sum(axis=0).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 -> NaN -> None: undefined, not 0
        precision, recall = tp / pred, tp / ref
        # F1 needs the recall: without reference pixels it is undefined, even if predicted
        f1 = np.where(ref > 0, 2 * tp / (ref + pred), np.nan)
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
    per_block = unit_confusions(t, p, b_idx, n_blocks, q)
    # The draws are those of every other figure of the run with this seed and these blocks
    # (pipeline.evaluation.resampling): intervals of two models on the same test set are paired.
    cms = np.concatenate([c for (c,) in resample_units([per_block], n_boot, seed, chunk_cells)])
    oa, kappa, macro = confusion_scores(cms.reshape(n_boot, q, q))
    for key, vals in (("overall_accuracy", oa), ("kappa", kappa), ("macro_f1", macro)):
        out[key] = percentile_interval(vals)
    out["n_blocks"] = n_blocks
    return {k: out[k] for k in ("overall_accuracy", "kappa", "macro_f1", "n_blocks", "n_boot")}

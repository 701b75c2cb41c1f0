"""Reference data under suspicion: accuracy per reference polygon, over every model.

Pixel metrics pool all test pixels, so one large polygon with a wrong label (or
imaged on another date) drags every model down without saying so. Here each test
polygon (a ``group`` of the sample table: the 0-based row of the feature in the
label file; a cell of a label raster) gets the share of its test pixels that each
model maps as its label. A polygon that *every* model contradicts (each maps less
than half of its pixels as its label) is more likely a reference problem than a
model problem; for those, :func:`suspect_spectra` compares the polygon's mean
spectrum with its class's training spectra.

Inputs are the run's own tables: ``samples`` (``samples.parquet``), one
evaluation table per model (``eval/<model>.parquet``: ``sample, y_pred``) and the
centre pixels of the patch store. Everything returned is JSON-ready.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

#: A model "contradicts" a polygon when it maps less than this share of its test pixels as its label.
CONTRADICTED_BELOW = 0.5


def _keys(samples: pd.DataFrame) -> list[str]:
    # A group is only unique within its scene (several scenes per run, see the shared contract).
    # A single-scene run has one scene name for every row: polygons are then named by group alone.
    return ["scene", "group"] if "scene" in samples.columns and samples["scene"].nunique() > 1 else ["group"]


def polygon_accuracy(
    samples: pd.DataFrame, evals: Mapping[str, pd.DataFrame], class_names: Mapping[int, str]
) -> pd.DataFrame:
    """Per test polygon: its test pixels, each model's share of them mapped as its label, and the verdict.

    Parameters
    ----------
    samples : DataFrame, one row per labelled pixel, with ``x, y, class_id, group`` (and ``scene``).
    evals : {model: DataFrame with ``sample`` (row position in ``samples``) and ``y_pred``}
        The test predictions of each model (k-fold: the pooled out-of-fold ones).
    class_names : {class id: name}

    Returns
    -------
    DataFrame, one row per polygon with test pixels in any model, worst first:
    ``[scene,] group, class_name, pixels, x, y`` (mean of its test pixels' coordinates), one
    column per model (share correct, NaN where the model has no prediction), ``mean_accuracy``
    (over models), ``predicted_as`` (the class the models give its pixels most often) and
    ``contradicted`` (every model maps less than :data:`CONTRADICTED_BELOW` of it as its label).
    """
    keys = _keys(samples)
    parts = []
    for m, ev in evals.items():
        s = samples.iloc[ev["sample"].to_numpy()]
        parts.append(
            pd.DataFrame(
                {
                    **{k: s[k].to_numpy() for k in keys},
                    "model": m,
                    "sample": ev["sample"].to_numpy(),
                    "correct": ev["y_pred"].to_numpy() == s["class_id"].to_numpy(),
                    "y_pred": ev["y_pred"].to_numpy(),
                }
            )
        )
    cols = [*keys, "class_name", "pixels", "x", "y", *evals, "mean_accuracy", "predicted_as", "contradicted"]
    if not parts:
        return pd.DataFrame(columns=cols)
    long = pd.concat(parts, ignore_index=True)
    share = long.pivot_table(index=keys, columns="model", values="correct", aggfunc="mean")
    share = share.reindex(columns=list(evals))
    test_idx = np.unique(long["sample"].to_numpy())
    px = (
        samples.iloc[test_idx]
        .groupby(keys)
        .agg(class_id=("class_id", "first"), pixels=("class_id", "size"), x=("x", "mean"), y=("y", "mean"))
    )
    top = long.groupby(keys)["y_pred"].agg(lambda v: int(pd.Series(v).mode().iloc[0]))
    out = px.join(share).join(top.rename("predicted_as"))
    out["mean_accuracy"] = out[list(evals)].mean(axis=1)
    out["contradicted"] = (out[list(evals)].fillna(0.0) < CONTRADICTED_BELOW).all(axis=1)
    out["class_name"] = out["class_id"].map(lambda c: class_names.get(int(c), str(c)))
    out["predicted_as"] = out["predicted_as"].map(lambda c: class_names.get(int(c), str(c)))
    out = out.reset_index().sort_values(["mean_accuracy", *keys], kind="stable")
    return out[cols].reset_index(drop=True)


def centre_pixels(patches: Any, rows: np.ndarray) -> np.ndarray:
    """Band values ``(len(rows), bands)`` of the samples' own pixels (the centres of their patches)."""
    c = patches.shape[-1] // 2
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return np.empty((0, patches.shape[1]), np.float32)
    return np.asarray(patches[rows, :, c, c], dtype=np.float32)


def _summary(values: np.ndarray) -> dict[str, list[float | None]]:
    def clean(a: np.ndarray) -> list[float | None]:
        return [None if not np.isfinite(v) else float(v) for v in a]

    if len(values) == 0 or not np.isfinite(values).any():
        n = values.shape[1] if values.ndim == 2 else 0
        return {"mean": [None] * n, "p10": [None] * n, "p90": [None] * n}
    with np.errstate(all="ignore"):
        return {
            "mean": clean(np.nanmean(values, axis=0)),
            "p10": clean(np.nanpercentile(values, 10, axis=0)),
            "p90": clean(np.nanpercentile(values, 90, axis=0)),
        }


def suspect_spectra(
    samples: pd.DataFrame,
    patches: Any,
    band_names: Sequence[str],
    suspects: pd.DataFrame,
    train_masks: Sequence[np.ndarray],
    test_fold: np.ndarray,
) -> list[dict]:
    """For each suspect polygon: its test pixels' spectrum against its class's training spectra.

    The training pixels are those of the fold that tested the polygon (with k-fold, another
    fold's training set can hold the polygon itself); a polygon tested in several folds (cut into
    sub-blocks) is compared with the pixels every one of those folds trained on.

    Parameters
    ----------
    train_masks : sequence of ndarray of bool, each shape (n,)
        The training samples of each fold.
    test_fold : ndarray of int, shape (n,)
        The fold that tested each sample; -1: never tested.

    Returns a list of ``{[scene,] group, class_name, predicted_as, pixels, bands, polygon: {mean, p10, p90},
    class_training: {mean, p10, p90, pixels}, predicted_training: {...}, ratio}`` where ``ratio`` is the
    polygon's mean over its class's training mean, per band (``None`` where undefined).
    """
    keys = _keys(samples)
    out = []
    names = samples["class_name"].to_numpy()
    for _, row in suspects.iterrows():
        mine = test_fold >= 0
        for k in keys:
            mine &= samples[k].to_numpy() == row[k]
        train_mask = np.logical_and.reduce([train_masks[f] for f in np.unique(test_fold[mine])])
        poly = centre_pixels(patches, np.flatnonzero(mine))
        same = centre_pixels(patches, np.flatnonzero(train_mask & (names == row["class_name"])))
        pred = centre_pixels(patches, np.flatnonzero(train_mask & (names == row["predicted_as"])))
        p, t = _summary(poly), _summary(same)
        ratio = [None if a is None or b in (None, 0) else a / b for a, b in zip(p["mean"], t["mean"])]
        out.append(
            {
                **{k: (int(row[k]) if k == "group" else str(row[k])) for k in keys},
                "class_name": str(row["class_name"]),
                "predicted_as": str(row["predicted_as"]),
                "pixels": int(mine.sum()),
                "bands": list(band_names),
                "polygon": p,
                "class_training": {**t, "pixels": len(same)},
                "predicted_training": {**_summary(pred), "pixels": len(pred)},
                "ratio": ratio,
            }
        )
    return out


def reference_check(
    samples: pd.DataFrame,
    evals: Mapping[str, pd.DataFrame],
    class_names: Mapping[int, str],
    patches: Any,
    band_names: Sequence[str],
    train_folds: Sequence[np.ndarray] | None = None,
) -> dict:
    """``metrics.json["polygons"]``: per-polygon accuracy over all models and the polygons all of them contradict.

    ``train_folds`` are the training sample positions of each fold (``folds.json``); the
    evaluation tables' ``fold`` column says which fold tested each sample. Without them (one
    split), the training samples are those whose ``split`` is ``"train"``.

    ``{"contradicted_below": 0.5, "models": [...], "polygons": [row per test polygon],
    "suspects": [suspect_spectra entries]}``; a polygon row holds its keys, ``class_name``,
    ``pixels``, ``x``, ``y``, ``accuracy`` ({model: share or None}), ``mean_accuracy``,
    ``predicted_as`` and ``contradicted``.
    """
    table = polygon_accuracy(samples, evals, class_names)
    keys = _keys(samples)
    models = list(evals)
    rows = []
    for _, r in table.iterrows():
        acc = {m: (None if pd.isna(r[m]) else float(r[m])) for m in models}
        rows.append(
            {
                **{k: (int(r[k]) if k == "group" else str(r[k])) for k in keys},
                "class_name": str(r["class_name"]),
                "pixels": int(r["pixels"]),
                "x": float(r["x"]),
                "y": float(r["y"]),
                "accuracy": acc,
                "mean_accuracy": None if pd.isna(r["mean_accuracy"]) else float(r["mean_accuracy"]),
                "predicted_as": str(r["predicted_as"]),
                "contradicted": bool(r["contradicted"]),
            }
        )
    n = len(samples)
    if train_folds is not None and not all("fold" in ev.columns for ev in evals.values()):
        train_folds = None  # evaluation tables of a run from before k-fold: one split
    if train_folds is not None:
        train_masks = [np.isin(np.arange(n), tr) for tr in train_folds]
    else:
        split = samples["split"].to_numpy() if "split" in samples.columns else np.array([""] * n)
        train_masks = [split == "train"]
    test_fold = np.full(n, -1, dtype=np.int64)
    for ev in evals.values():  # every model is tested on the same folds
        test_fold[ev["sample"].to_numpy()] = ev["fold"].to_numpy() if train_folds is not None else 0
    suspects = table[table["contradicted"]] if len(table) and len(models) else table.iloc[:0]
    spectra = suspect_spectra(samples, patches, band_names, suspects, train_masks, test_fold) if len(suspects) else []
    return {"contradicted_below": CONTRADICTED_BELOW, "models": models, "polygons": rows, "suspects": spectra}

"""Accuracy assessment of one model: everything ``metrics.json`` holds for it, from its
test-split predictions and its class map.

The per-pixel metrics and their bootstrap intervals come from :mod:`pipeline.evaluation.metrics`
(where a new metric is added), the class areas and the area-adjusted estimates from
:mod:`pipeline.evaluation.area_estimates`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.evaluation.area_estimates import area_adjusted_from_labels, area_table_from_counts, unit_intervals
from pipeline.evaluation.metrics import bootstrap_ci, classification_metrics


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
        and, with a map, ``"class_areas"`` and ``"area_adjusted"`` (whose ``"ci95_units"``
        holds the intervals by resampling blocks, :func:`unit_intervals`; the same draws as
        ``"ci95"``). The test pixels' predictions stand in for the map's classes there.
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
        strata = np.array([float(area_ha.get(c, 0.0)) for c in class_ids])
        out["area_adjusted"]["ci95_units"] = unit_intervals(
            y_true, y_pred, blocks, strata, class_ids, class_names, n_boot=n_boot, seed=seed
        )
    return out

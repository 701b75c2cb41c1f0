"""Does a raster to be mapped hold values like the ones the model was trained on?

A model trained on uint16 reflectance (0-10000) and applied to float reflectance (0-1), or to a
product scaled by 100, still produces a map that looks like a map. So the model records, per
band, percentiles of its training pixels and the raster data types (:func:`training_value_range`,
saved as ``ModelMeta.value_range``), and mapping compares a small sample of the input against
them (:func:`value_range_problem`), reporting one line when the input is clearly off.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from rasterio.windows import Window

MAX_SAMPLE = 100_000  # pixels: percentiles are stable well below this, and memory stays small
# A band is off when its median differs FACTOR-fold from the training median and leaves the
# training [p1/2, 2*p99] (positive values), or leaves [p1, p99] widened by MARGIN of the range on
# each side (values that reach 0 or below, e.g. dB or indices).
MARGIN = 0.5
FACTOR = 10.0


def training_value_range(values: np.ndarray, dtypes: list[str], seed: int = 0) -> dict[str, Any]:
    """Per-band p1 / p50 / p99 of training pixels.

    values : (n, bands) pixel values, NaN where nodata; at most :data:`MAX_SAMPLE` rows are used.
    dtypes : the raster data type of each band (``RasterStack.dtypes``).
    Returns a JSON-ready dict ``{"p1": [...], "p50": [...], "p99": [...], "dtypes": [...], "n": int}``
    (a band without any valid value gets None percentiles).
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) > MAX_SAMPLE:
        values = values[np.random.default_rng(seed).choice(len(values), MAX_SAMPLE, replace=False)]
    out: dict[str, Any] = {"p1": [], "p50": [], "p99": [], "dtypes": [str(d) for d in dtypes], "n": int(len(values))}
    for b in range(values.shape[1]):
        v = values[:, b]
        v = v[np.isfinite(v)]
        q = np.percentile(v, [1, 50, 99]) if len(v) else [None] * 3
        for k, x in zip(("p1", "p50", "p99"), q):
            out[k].append(None if x is None else float(x))
    return out


def sample_stack(stack: Any, max_pixels: int = MAX_SAMPLE, grid: int = 5) -> np.ndarray:
    """(n, bands) values of a few windows spread over ``stack`` (a ``RasterStack``), NaN at nodata.

    ``grid`` x ``grid`` square windows evenly spaced over the raster, together about
    ``max_pixels`` pixels: a small raster is read whole, a large one costs a few reads.
    """
    h, w = stack.grid.height, stack.grid.width
    side = max(1, int(math.sqrt(max_pixels / (grid * grid))))
    if h * w <= max_pixels:
        wins = [Window(0, 0, w, h)]
    else:
        rows = sorted({int(r) for r in np.linspace(0, max(h - side, 0), grid)})
        cols = sorted({int(c) for c in np.linspace(0, max(w - side, 0), grid)})
        wins = [Window(c, r, min(side, w - c), min(side, h - r)) for r in rows for c in cols]
    parts = [stack.read(win).reshape(stack.count, -1).T for win in wins]
    return np.concatenate(parts) if parts else np.empty((0, stack.count), np.float32)


def _factor_text(ratio: float) -> str:
    """ "100x larger" for 99.7: two significant digits, written out (never 1e+04)."""
    r = ratio if ratio >= 1 else 1 / ratio
    r = round(r, 1 - int(math.floor(math.log10(r))))
    return (f"{r:.0f}x" if r >= 10 else f"{r:g}x") + (" larger" if ratio >= 1 else " smaller")


def value_range_problem(
    values: np.ndarray, dtypes: list[str], band_names: list[str], reference: dict[str, Any] | None
) -> str | None:
    """What is clearly off about the input's values against ``reference``, or None.

    values : (n, bands) sample of the input (:func:`sample_stack`); dtypes its bands' data types.
    Off means: a majority of the bands have their median outside the training range (see
    :data:`MARGIN`, :data:`FACTOR`), or the data type differs from the training one. The text
    names the bands and the typical factor between the input's and the training medians.
    """
    if not reference or not reference.get("p50") or len(reference["p50"]) != values.shape[1]:
        return None  # a model saved before the check, or another band layout: nothing to compare
    off, ratios = [], []
    for b, name in enumerate(band_names):
        v = values[:, b].astype(np.float64)
        v = v[np.isfinite(v)]
        p1, p50, p99 = reference["p1"][b], reference["p50"][b], reference["p99"][b]
        if not len(v) or p50 is None:
            continue
        med = float(np.median(v))
        if p50 != 0 and med / p50 > 0:  # same sign: the factor of magnitudes
            ratios.append(med / p50)
        if p1 > 0 and med > 0:
            # Positive values (reflectance, DN, radiance) are compared in ratios: units differ by
            # factors, and a clear scene against a hazy training one is 3x darker, not other units.
            off_band = not (1 / FACTOR < med / p50 < FACTOR) and not (p1 / 2 <= med <= 2 * p99)
        else:
            span = p99 - p1
            off_band = med < p1 - MARGIN * span or med > p99 + MARGIN * span
        if off_band:
            off.append(name)
    compared = sum(1 for b in range(values.shape[1]) if reference["p50"][b] is not None)
    bad_range = compared > 0 and len(off) > compared / 2
    train_dt = [str(d) for d in reference.get("dtypes") or []]
    bad_dtype = len(train_dt) == len(dtypes) and [str(d) for d in dtypes] != train_dt
    if not (bad_range or bad_dtype):
        return None
    parts = []
    ratio = float(np.median(ratios)) if ratios else None
    if bad_range:
        size = (
            f"values look {_factor_text(ratio)} than in training" if ratio else "values are outside the training range"
        )
        shown = ", ".join(off[:6]) + (f" and {len(off) - 6} more" if len(off) > 6 else "")
        parts.append(f"{size} (median of band(s) {shown} outside the training 1-99% range)")
    elif ratio is not None and not (0.5 < ratio < 2):
        parts.append(f"values look {_factor_text(ratio)} than in training")
    if bad_dtype:
        have = ", ".join(sorted(set(map(str, dtypes))))
        parts.append(f"data type {have}, the model was trained on {', '.join(sorted(set(train_dt)))}")
    return "; ".join(parts) + "; check the units and scaling of the input"


def check_stack(stack: Any, reference: dict[str, Any] | None) -> str | None:
    """One line naming the raster when ``stack`` (opened for the model) is clearly off, else None."""
    if not reference:
        return None
    problem = value_range_problem(sample_stack(stack), list(stack.dtypes), list(stack.band_names), reference)
    return f"{stack.paths[0]}: {problem}" if problem else None

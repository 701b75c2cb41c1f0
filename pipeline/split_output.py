"""Geometries and files of a spatial split: block polygons, buffer zones,
``splits.gpkg`` and ``split_map.png``.

The assignment itself lives in :mod:`pipeline.split` (strategies) and
:mod:`pipeline.split_assign` (maths); this module only draws and writes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from pipeline.atomic import atomic_path
from pipeline.split_assign import EXCLUDED

if TYPE_CHECKING:
    from pipeline.split import SplitResult

__all__ = ["block_frame", "group_frame", "write_splits_gpkg", "plot_split_map", "SPLIT_COLORS"]

SPLIT_COLORS = {"train": "#1f77b4", "validation": "#ff7f0e", "test": "#d62728", EXCLUDED: "#7f7f7f",
                "mixed": "#9467bd", "never-test": "#2ca02c"}


def block_frame(unit_ids: np.ndarray, unit_split: list[str], unit_fold: np.ndarray, unit_n: np.ndarray,
                x0: float, y0: float, nx: int, size: float, crs: Any) -> gpd.GeoDataFrame:
    """One square per block: columns ``block``, ``split``, ``fold``, ``n_samples``, ``geometry``."""
    bx = unit_ids % nx
    by = unit_ids // nx
    geom = shapely.box(x0 + bx * size, y0 + by * size, x0 + (bx + 1) * size, y0 + (by + 1) * size)
    return gpd.GeoDataFrame(
        {"block": unit_ids.astype(np.int64), "split": list(unit_split), "fold": unit_fold.astype(np.int64),
         "n_samples": unit_n.astype(np.int64)},
        geometry=geom, crs=crs,
    )


def group_frame(xy: np.ndarray, groups: np.ndarray, labels: np.ndarray, rx: float, ry: float,
                crs: Any) -> gpd.GeoDataFrame:
    """Random strategy: one square per group (envelope of its pixels), split or 'mixed'."""
    df = pd.DataFrame({"g": groups, "x": xy[:, 0], "y": xy[:, 1], "s": labels})
    agg = df.groupby("g", sort=True).agg(x0=("x", "min"), x1=("x", "max"), y0=("y", "min"), y1=("y", "max"),
                                         n=("s", "size"), ns=("s", "nunique"), s=("s", "first"))
    cx, cy = (agg.x0 + agg.x1) / 2, (agg.y0 + agg.y1) / 2
    half = np.maximum(agg.x1 - agg.x0 + rx, agg.y1 - agg.y0 + ry) / 2
    geom = shapely.box(cx - half, cy - half, cx + half, cy + half)
    split = np.where(agg.ns.to_numpy() > 1, "mixed", agg.s.to_numpy().astype(str))
    return gpd.GeoDataFrame({"block": agg.index.to_numpy().astype(np.int64), "split": split,
                             "fold": np.zeros(len(agg), dtype=np.int64), "n_samples": agg.n.to_numpy()},
                            geometry=geom, crs=crs)


def buffer_zones(result: SplitResult, xy: np.ndarray) -> list[tuple[int, Any]]:
    """Per fold, the union of the squares of half-side ``buffer`` around the test samples."""
    out: list[tuple[int, Any]] = []
    if not result.buffer or result.strategy == "random":
        return out
    b = float(result.buffer)
    labs = result.fold_splits or [result.split]
    for f, lab in enumerate(labs):
        t = xy[lab == "test"]
        if len(t) == 0:
            continue
        boxes = shapely.box(t[:, 0] - b, t[:, 1] - b, t[:, 0] + b, t[:, 1] + b)
        out.append((f, shapely.union_all(boxes)))
    return out


def write_splits_gpkg(result: SplitResult, samples: pd.DataFrame, path: Path, crs: Any) -> Path:
    """Write ``splits.gpkg`` with layers ``blocks`` and ``buffer``.

    ``blocks`` is :attr:`SplitResult.blocks`; ``buffer`` holds one (multi)polygon
    per fold: the union of the squares of half-side ``buffer`` around the test
    samples, i.e. the zone where training/validation samples were excluded
    (empty for the random strategy). The file is written under a temporary
    name and moved into place with ``os.replace``.

    Parameters
    ----------
    result : SplitResult
    samples : DataFrame, n rows
        The table that was split (needs ``x``, ``y``).
    path : Path
    crs
        CRS of the coordinates.

    Returns
    -------
    Path
    """
    path = Path(path)
    xy = samples[["x", "y"]].to_numpy(dtype=np.float64)
    blocks = result.blocks.copy()
    blocks = blocks.set_crs(crs, allow_override=True) if crs is not None else blocks
    zones = buffer_zones(result, xy)
    buf = gpd.GeoDataFrame(
        {"fold": np.array([z[0] for z in zones], dtype=np.int64),
         "buffer": np.full(len(zones), float(result.buffer or 0.0))},
        geometry=gpd.GeoSeries([z[1] for z in zones], dtype="geometry"),
        crs=crs,
    )
    with atomic_path(path) as tmp:
        blocks.to_file(tmp, layer="blocks", driver="GPKG")
        buf.to_file(tmp, layer="buffer", driver="GPKG", geometry_type="MultiPolygon" if not zones else None)
    return path


def _legend_handles(result: SplitResult, has_zones: bool) -> list:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = []
    for s in ("train", "validation", "test", EXCLUDED):
        n = int(np.sum(result.split == s))
        handles.append(Line2D([], [], color=SPLIT_COLORS[s], marker="o" if s != EXCLUDED else "x",
                              linestyle="", label=f"{s} ({n})"))
    handles.append(Patch(facecolor="#dddddd", edgecolor="#444444",
                         label="block of each polygon (tinted by split;\na polygon's pixels may spill over)"))
    if has_zones:
        handles.append(Line2D([], [], color=SPLIT_COLORS["test"], linestyle="--",
                              label="buffer around test pixels"))
    return handles


def _title(result: SplitResult) -> str:
    n = {s: int(np.sum(result.split == s)) for s in ("train", "validation", "test", EXCLUDED)}
    bs = result.report.get("block_size")
    extra = f", blocks {bs:g}, buffer {result.report.get('buffer'):g}" if bs else ""
    fold = " (fold 0)" if result.strategy == "kfold" else ""
    return (f"split: {result.strategy}{fold}{extra}\ntrain {n['train']} / validation {n['validation']} / "
            f"test {n['test']} / excluded {n[EXCLUDED]}")


def plot_split_map(samples: pd.DataFrame, result: SplitResult, path: Path) -> Path:
    """Draw the split as a PNG: blocks coloured by split, samples as points.

    Parameters
    ----------
    samples : DataFrame, n rows
        The table that was split (needs ``x``, ``y``).
    result : SplitResult
    path : Path

    Returns
    -------
    Path
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    xy = samples[["x", "y"]].to_numpy(dtype=np.float64)
    fig = Figure(figsize=(10, 7), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if len(result.blocks):
        colors = [SPLIT_COLORS.get(str(s), "#cccccc") for s in result.blocks["split"]]
        result.blocks.plot(ax=ax, color=colors, alpha=0.25, edgecolor="#444444", linewidth=0.4)
    zones = buffer_zones(result, xy)[:1]  # fold 0, as the points
    for _, zone in zones:
        gpd.GeoSeries([zone]).plot(ax=ax, facecolor="none", edgecolor=SPLIT_COLORS["test"], linestyle="--",
                                   linewidth=0.7)
    for s in ("train", "validation", "test", EXCLUDED):
        m = result.split == s
        if m.any():
            ax.scatter(xy[m, 0], xy[m, 1], s=2 if s != EXCLUDED else 3, c=SPLIT_COLORS[s],
                       marker="." if s != EXCLUDED else "x", linewidths=0.5, rasterized=True)
    ax.legend(handles=_legend_handles(result, bool(zones)), loc="upper left", bbox_to_anchor=(1.01, 1.0),
              fontsize=8, framealpha=0.85)
    ax.set_title(_title(result), fontsize=9)
    ax.set_aspect("equal")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.ticklabel_format(useOffset=False, style="plain")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path

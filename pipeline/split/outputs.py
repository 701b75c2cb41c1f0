"""Geometries and files of a spatial split: block polygons, buffer zones,
``splits.gpkg`` and ``split_map.png``.

The assignment itself lives in the strategies (named in :mod:`pipeline.split.make`) and
:mod:`pipeline.split.assign` (maths); this module only draws and writes it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from pipeline.core.atomic import atomic_path, write_figure
from pipeline.split.assign import EXCLUDED
from pipeline.split.types import SplitResult

__all__ = [
    "SPLIT_COLORS",
    "block_frame",
    "group_frame",
    "plot_split_map",
    "split_map_figure",
    "rows_crs",
    "samples_frame",
    "to_common_crs",
    "write_splits_gpkg",
]

#: Beyond this many blocks the split map shows only the points (see :func:`plot_split_map`).
MAX_DRAWN_BLOCKS = 20_000
SPLIT_COLORS = {
    "train": "#1f77b4",
    "validation": "#ff7f0e",
    "test": "#d62728",
    EXCLUDED: "#7f7f7f",
    "mixed": "#9467bd",
    "never-test": "#2ca02c",
}


def _cells_polygons(
    unit_of: np.ndarray, cell: np.ndarray, gridspec: tuple[float, float, int], size: float, n_units: int
) -> list[Any]:
    """Per unit, the union of the grid cells its samples fall in (so every sample lies inside)."""
    x0, y0, nx = gridspec
    pairs = np.unique(np.stack([unit_of, cell], axis=1), axis=0)
    bx, by = pairs[:, 1] % nx, pairs[:, 1] // nx
    boxes = shapely.box(x0 + bx * size, y0 + by * size, x0 + (bx + 1) * size, y0 + (by + 1) * size)
    starts = np.searchsorted(pairs[:, 0], np.arange(n_units + 1))
    return [shapely.union_all(boxes[starts[u] : starts[u + 1]]) for u in range(n_units)]


def _envelopes(xy: np.ndarray, unit_of: np.ndarray, n_units: int, res: tuple[float, float]) -> list[Any]:
    """Per unit, the rectangle around the pixel footprints of its samples."""
    df = pd.DataFrame({"u": unit_of, "x": xy[:, 0], "y": xy[:, 1]}).groupby("u").agg(["min", "max"])
    df = df.reindex(range(n_units))
    hx, hy = abs(res[0]) / 2, abs(res[1]) / 2
    return list(shapely.box(df["x"]["min"] - hx, df["y"]["min"] - hy, df["x"]["max"] + hx, df["y"]["max"] + hy))


def block_frame(
    xy: np.ndarray,
    unit_of: np.ndarray,
    unit_ids: np.ndarray,
    unit_split: list[str],
    unit_fold: np.ndarray,
    unit_scene: list[str],
    cell: np.ndarray | None,
    gridspec: tuple[float, float, int] | None,
    size: float | None,
    res: tuple[float, float],
    crs: Any,
) -> gpd.GeoDataFrame:
    """One row per assignment unit: ``block``, ``split``, ``fold``, ``n_samples``, ``scene`` and a
    geometry drawn where the unit's samples are: the union of the grid cells they fall in (a polygon
    spilling over a block edge takes the neighbouring cell along), or, without a grid (whole scenes),
    the rectangle around them.

    Parameters
    ----------
    xy : ndarray, shape (n, 2)
    unit_of : ndarray of int, shape (n,)
        Index into ``unit_ids`` per sample.
    unit_ids : ndarray, shape (U,)
    unit_split, unit_fold, unit_scene : length U
    cell : ndarray of int, shape (n,), or None
        Grid cell per sample (``by * nx + bx``).
    gridspec : (x0, y0, nx) or None
    size : float or None
        Block size in map units.
    res : (float, float)
    crs
    """
    U = len(unit_ids)
    if cell is not None and gridspec is not None and size is not None:
        geom = _cells_polygons(unit_of, cell, gridspec, size, U)
    else:
        geom = _envelopes(xy, unit_of, U, res)
    return gpd.GeoDataFrame(
        {
            "block": np.asarray(unit_ids).astype(np.int64),
            "split": list(unit_split),
            "fold": np.asarray(unit_fold).astype(np.int64),
            "n_samples": np.bincount(unit_of, minlength=U).astype(np.int64),
            "scene": list(unit_scene),
        },
        geometry=gpd.GeoSeries(geom),
        crs=crs,
    )


def samples_frame(samples: pd.DataFrame, result: SplitResult, crs: Any) -> gpd.GeoDataFrame:
    """One point per sample: ``split`` (kfold: fold 0), ``block``, ``fold``, ``class``, ``scene``."""
    xy = samples[["x", "y"]].to_numpy(dtype=np.float64)
    scene = samples["scene"].astype(str).to_numpy() if "scene" in samples.columns else np.full(len(samples), "scene")
    return gpd.GeoDataFrame(
        {
            "split": np.asarray(result.split).astype(str),
            "block": np.asarray(result.block).astype(np.int64),
            "fold": np.asarray(result.fold).astype(np.int64),
            "class": samples["class_name"].astype(str).to_numpy(),
            "class_id": samples["class_id"].to_numpy().astype(np.int64),
            "scene": scene,
        },
        geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]),
        crs=crs,
    )


def group_frame(
    xy: np.ndarray, groups: np.ndarray, labels: np.ndarray, rx: float, ry: float, crs: Any
) -> gpd.GeoDataFrame:
    """Random strategy: one square per group (envelope of its pixels), split or 'mixed'."""
    df = pd.DataFrame({"g": groups, "x": xy[:, 0], "y": xy[:, 1], "s": labels})
    agg = df.groupby("g", sort=True).agg(
        x0=("x", "min"),
        x1=("x", "max"),
        y0=("y", "min"),
        y1=("y", "max"),
        n=("s", "size"),
        ns=("s", "nunique"),
        s=("s", "first"),
    )
    cx, cy = (agg.x0 + agg.x1) / 2, (agg.y0 + agg.y1) / 2
    half = np.maximum(agg.x1 - agg.x0 + rx, agg.y1 - agg.y0 + ry) / 2
    geom = shapely.box(cx - half, cy - half, cx + half, cy + half)
    split = np.where(agg.ns.to_numpy() > 1, "mixed", agg.s.to_numpy().astype(str))
    return gpd.GeoDataFrame(
        {
            "block": agg.index.to_numpy().astype(np.int64),
            "split": split,
            "fold": np.zeros(len(agg), dtype=np.int64),
            "n_samples": agg.n.to_numpy(),
        },
        geometry=geom,
        crs=crs,
    )


def buffer_zones(
    result: SplitResult, xy: np.ndarray, row_crs: np.ndarray | None = None, target: Any = None
) -> list[tuple[int, Any]]:
    """Per fold, the union of the squares of half-side ``buffer`` around the test samples.

    With ``row_crs`` (the CRS of each row of ``xy``, scenes in several CRSs), the squares of
    each CRS are drawn in it and reprojected into ``target`` before the union."""
    out: list[tuple[int, Any]] = []
    if not result.buffer or result.strategy == "random":
        return out
    b = float(result.buffer)
    labs = result.fold_splits or [result.split]
    for f, lab in enumerate(labs):
        test = np.asarray(lab) == "test"
        if not test.any():
            continue
        parts = []
        for c in [None] if row_crs is None else list(pd.unique(row_crs[test])):
            t = xy[test if c is None else test & (row_crs == c)]
            zone = shapely.union_all(shapely.box(t[:, 0] - b, t[:, 1] - b, t[:, 0] + b, t[:, 1] + b))
            parts.append(zone if c is None else gpd.GeoSeries([zone], crs=c).to_crs(target).iloc[0])
        out.append((f, shapely.union_all(parts)))
    return out


def to_common_crs(frame: gpd.GeoDataFrame, row_crs: np.ndarray, target: Any) -> gpd.GeoDataFrame:
    """``frame`` with each row's geometry, given in the CRS ``row_crs`` names for that row,
    reprojected into ``target`` (scenes in several CRSs written as one layer a GIS can read)."""
    parts = [frame[row_crs == c].set_crs(c, allow_override=True).to_crs(target) for c in pd.unique(np.asarray(row_crs))]
    return gpd.GeoDataFrame(pd.concat(parts).loc[frame.index], crs=target)


def blocks_to_common_crs(result: SplitResult, row_crs: np.ndarray, target: Any) -> gpd.GeoDataFrame:
    """:attr:`SplitResult.blocks` reprojected into ``target``, each block from the CRS of its
    samples (``row_crs``, one per sample): a block lies in one CRS zone."""
    crs_of_block = pd.Series(row_crs, index=np.asarray(result.block)).groupby(level=0).first()
    blocks = result.blocks.copy()
    return to_common_crs(blocks, blocks["block"].map(crs_of_block).to_numpy(dtype=object), target)


def rows_crs(samples: pd.DataFrame, crs: Any, scene_crs: dict[str, str] | None) -> tuple[np.ndarray | None, Any]:
    """The CRS of each sample and the CRS to write in: ``(None, crs)`` when the run has one CRS;
    with scenes in several CRSs (``crs`` None), each sample's scene CRS and the first sample's."""
    if crs is not None or not scene_crs or "scene" not in samples.columns or not len(samples):
        return None, crs
    row = samples["scene"].astype(str).map(scene_crs).to_numpy(dtype=object)
    if pd.isna(row).any():
        missing = sorted(set(samples["scene"].astype(str)) - set(scene_crs))
        raise ValueError(f"no CRS for scene(s) {missing}")
    return row, row[0]


def write_splits_gpkg(
    result: SplitResult, samples: pd.DataFrame, path: Path, crs: Any, scene_crs: dict[str, str] | None = None
) -> Path:
    """Write ``splits.gpkg`` with layers ``blocks``, ``buffer`` and ``samples``.

    ``blocks`` is :attr:`SplitResult.blocks` (drawn where their samples are);
    ``samples`` is one point per sample (see :func:`samples_frame`); ``buffer`` holds one (multi)polygon
    per fold: the union of the squares of half-side ``buffer`` around the test
    samples, i.e. the zone where training/validation samples were excluded
    (empty for the random strategy). The file is written under a temporary
    name and moved into place with ``os.replace``; on a full disk, the error names
    the size the file needs (written again in a temporary folder to measure it).

    Parameters
    ----------
    result : SplitResult
    samples : DataFrame, n rows
        The table that was split (needs ``x``, ``y``; ``scene`` with ``scene_crs``).
    path : Path
    crs
        CRS of the coordinates, or None for scenes in several CRSs.
    scene_crs : dict, optional
        Scene name -> CRS. With ``crs`` None, every layer is reprojected into the CRS of the first
        sample's scene (each block and sample from its own scene's CRS), so that the file has one
        CRS and its layers overlay the maps in a GIS.

    Returns
    -------
    Path
    """
    path = Path(path)
    xy = samples[["x", "y"]].to_numpy(dtype=np.float64)
    row_crs, target = rows_crs(samples, crs, scene_crs)
    blocks = result.blocks.copy()
    pts = samples_frame(samples, result, None if row_crs is not None else crs)
    if row_crs is not None:
        blocks = blocks_to_common_crs(result, row_crs, target)
        pts = to_common_crs(pts, row_crs, target)
    elif crs is not None:
        blocks = blocks.set_crs(crs, allow_override=True)
    if "scene" in samples.columns and "scene" in blocks.columns and len(samples):
        # The split may see one zone per CRS rather than the scenes (adjacent tiles, dates of one
        # place): name the scenes a block's samples come from, not the zone.
        of_block = (
            samples["scene"].astype(str).groupby(np.asarray(result.block)).agg(lambda v: ", ".join(sorted(set(v))))
        )
        blocks["scene"] = blocks["block"].map(of_block).fillna(blocks["scene"])
    zones = buffer_zones(result, xy, row_crs, target)
    buf = gpd.GeoDataFrame(
        {
            "fold": np.array([z[0] for z in zones], dtype=np.int64),
            "buffer": np.full(len(zones), float(result.buffer or 0.0)),
        },
        geometry=gpd.GeoSeries([z[1] for z in zones], dtype="geometry"),
        crs=target,
    )

    def write(to: Path) -> None:
        blocks.to_file(to, layer="blocks", driver="GPKG")
        buf.to_file(to, layer="buffer", driver="GPKG", geometry_type="MultiPolygon" if not zones else None)
        pts.to_file(to, layer="samples", driver="GPKG")

    def size() -> int:  # only on a full disk: GDAL cannot say in advance what a GeoPackage takes
        with tempfile.TemporaryDirectory() as d:
            write(Path(d) / path.name)
            return (Path(d) / path.name).stat().st_size

    with atomic_path(path, size) as tmp:
        write(tmp)
    return path


def _legend_handles(result: SplitResult, has_zones: bool) -> list:
    from matplotlib.artist import Artist
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Artist] = []
    for s in ("train", "validation", "test", EXCLUDED):
        n = int(np.sum(result.split == s))
        handles.append(
            Line2D(
                [], [], color=SPLIT_COLORS[s], marker="o" if s != EXCLUDED else "x", linestyle="", label=f"{s} ({n})"
            )
        )
    handles.append(
        Patch(
            facecolor="#dddddd", edgecolor="#444444", label="blocks: the cells holding\ntheir samples, tinted by split"
        )
    )
    if has_zones:
        handles.append(Line2D([], [], color=SPLIT_COLORS["test"], linestyle="--", label="buffer around test pixels"))
    return handles


def _title(result: SplitResult) -> str:
    n = {s: int(np.sum(result.split == s)) for s in ("train", "validation", "test", EXCLUDED)}
    bs = result.report.get("block_size")
    extra = f", blocks {bs:g}, buffer {result.report.get('buffer'):g}" if bs else ""
    fold = " (fold 0)" if result.strategy == "kfold" else ""
    return (
        f"split: {result.strategy}{fold}{extra}\ntrain {n['train']} / validation {n['validation']} / "
        f"test {n['test']} / excluded {n[EXCLUDED]}"
    )


def _nice_length(span: float) -> float:
    """A round length (1, 2 or 5 times a power of ten) near a fifth of ``span``."""
    raw = max(span / 5.0, 1e-12)
    p = 10.0 ** np.floor(np.log10(raw))
    return float(max(m * p for m in (1, 2, 5) if m * p <= raw) if raw >= p else p)


def _crs_text(crs: Any) -> tuple[str, str]:
    """(CRS name with its EPSG code if any, unit name of the first axis) for the axis labels."""
    if crs is None:
        return "CRS unknown", "map units"
    epsg = crs.to_epsg()
    name = crs.name
    if not name or name.lower() in ("unnamed", "unknown"):
        # A WKT without a name (the demo's Landsat files): say at least what projection it is.
        from pyproj import CRS as ProjCRS

        op = ProjCRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs).coordinate_operation
        name = f"unnamed {op.method_name} CRS" if op is not None else "unnamed CRS"
    if epsg:
        name = f"{name} (EPSG:{epsg})"
    unit = crs.axis_info[0].unit_name if crs.axis_info else "map units"
    return name, {"metre": "m"}.get(unit, unit)


def _metres_per_degree_of_longitude(crs: Any, lat: float) -> float:
    """Length in metres of one degree of longitude at latitude ``lat`` on the CRS's ellipsoid."""
    geod = crs.get_geod()
    if geod is None:  # no ellipsoid known: the WGS 84 one is within 0.5% of any Earth ellipsoid
        from pyproj import Geod

        geod = Geod(ellps="WGS84")
    lat = float(np.clip(lat, -89.9, 89.9))
    return float(geod.inv(0.0, lat, 1.0, lat)[2])


def _georeference(ax: Any, crs: Any) -> None:
    """Axis labels with the CRS and its units, and a scale bar.

    A geographic CRS gets longitude/latitude axes drawn at their true ratio at the map's mean
    latitude and a scale bar in metres along that parallel: a bar of "0.01 degree" says nothing
    about distance, and equal axes stretch the map east-west by 1/cos(latitude).
    """
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    name, unit = _crs_text(crs)
    geographic = bool(crs is not None and getattr(crs, "is_geographic", False))
    xname, yname = ("longitude", "latitude") if geographic else ("easting", "northing")
    ax.set_xlabel(f"{xname} ({unit}) - {name}", fontsize=8)
    ax.set_ylabel(f"{yname} ({unit})", fontsize=8)
    ax.ticklabel_format(useOffset=False, style="plain")
    x0, x1 = ax.get_xlim()
    if geographic:
        lat = float(np.mean(ax.get_ylim()))
        per_degree = _metres_per_degree_of_longitude(crs, lat)
        ax.set_aspect(1.0 / max(np.cos(np.radians(np.clip(lat, -89.9, 89.9))), 1e-3))
        metres = _nice_length((x1 - x0) * per_degree)
        length = metres / per_degree
        label = f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"
    else:
        length = _nice_length(x1 - x0)
        label = f"{length / 1000:g} km" if unit == "m" and length >= 1000 else f"{length:g} {unit}"
    ax.add_artist(
        AnchoredSizeBar(
            ax.transData,
            length,
            label,
            "lower left",
            pad=0.4,
            sep=3,
            frameon=True,
            size_vertical=(ax.get_ylim()[1] - ax.get_ylim()[0]) / 150,
            fontproperties={"size": 8},
        )
    )


def plot_split_map(
    samples: pd.DataFrame,
    result: SplitResult,
    path: Path,
    max_blocks: int = MAX_DRAWN_BLOCKS,
    scene_crs: dict[str, str] | None = None,
) -> Path:
    """Draw the split as a PNG: blocks coloured by split, samples as points.

    Past ``max_blocks`` blocks (a random split has one per sample) the blocks are not drawn
    (the title says so): one matplotlib patch per block cost ~3 KB each, hundreds of MB for a
    150,000-sample run, and blocks that small are invisible at this size anyway.

    Parameters
    ----------
    samples : DataFrame, n rows
        The table that was split (needs ``x``, ``y``; ``scene`` with ``scene_crs``).
    result : SplitResult
    path : Path
    max_blocks : int
    scene_crs : dict, optional
        Scene name -> CRS. When ``result.blocks`` has no CRS (scenes in several CRSs), points,
        blocks and buffer are drawn in the first sample's scene CRS, as in ``splits.gpkg``
        (see :func:`write_splits_gpkg`): native coordinates of different zones on one axis
        would be meaningless.

    Returns
    -------
    Path
    """
    fig = split_map_figure(samples, result, max_blocks, scene_crs)
    return write_figure(path, fig)


def split_map_figure(
    samples: pd.DataFrame,
    result: SplitResult,
    max_blocks: int = MAX_DRAWN_BLOCKS,
    scene_crs: dict[str, str] | None = None,
) -> Any:
    """The matplotlib ``Figure`` that :func:`plot_split_map` saves (same parameters)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from pyproj import CRS

    native = samples[["x", "y"]].to_numpy(dtype=np.float64)
    row_crs, crs = rows_crs(samples, result.blocks.crs, scene_crs)
    blocks = result.blocks
    xy = native
    if row_crs is not None:
        blocks = blocks_to_common_crs(result, row_crs, crs)
        pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(native[:, 0], native[:, 1]), index=samples.index)
        pts = to_common_crs(pts, row_crs, crs)
        xy = np.column_stack([pts.geometry.x, pts.geometry.y])
        crs = CRS.from_user_input(crs)
    fig = Figure(figsize=(10, 7), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    draw_blocks = 0 < len(blocks) <= max_blocks
    if draw_blocks:
        colors = [SPLIT_COLORS.get(str(s), "#cccccc") for s in blocks["split"]]
        blocks.plot(ax=ax, color=colors, alpha=0.25, edgecolor="#444444", linewidth=0.4)
    zones = buffer_zones(result, native, row_crs, crs)[:1]  # fold 0, as the points
    for _, zone in zones:
        gpd.GeoSeries([zone]).plot(
            ax=ax, facecolor="none", edgecolor=SPLIT_COLORS["test"], linestyle="--", linewidth=0.7
        )
    for s in ("train", "validation", "test", EXCLUDED):
        m = result.split == s
        if m.any():
            ax.scatter(
                xy[m, 0],
                xy[m, 1],
                s=2 if s != EXCLUDED else 3,
                c=SPLIT_COLORS[s],
                marker="." if s != EXCLUDED else "x",
                linewidths=0.5,
                rasterized=True,
            )
    ax.legend(
        handles=_legend_handles(result, bool(zones)),
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        framealpha=0.85,
    )
    title = _title(result)
    if len(result.blocks) > max_blocks:
        title += f"\n{len(result.blocks):,} blocks not drawn (more than {max_blocks:,}); the points show the split"
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal")
    _georeference(ax, crs)
    fig.tight_layout()
    return fig

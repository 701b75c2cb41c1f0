"""Vector labels: polygons or points of a label file, rasterised onto the image grid.

The features are reprojected to the raster's CRS and rasterised window by window (pixel
centres inside polygons; the pixel containing each point), so memory follows the window size,
not the scene. Every labelled pixel keeps the row number of its feature (``group``), which the
spatial split needs; pixels claimed by more than one geometry are left out and counted.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from affine import Affine
from rasterio import features
from rasterio.crs import CRS
from rasterio.enums import MergeAlg
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from pipeline.core.errors import InputError
from pipeline.inputs.coordinates import points_from_columns
from pipeline.inputs.label_source import UNUSABLE_REASONS, LabelReport, WindowLabels, class_lookup, to_class_id
from pipeline.inputs.raster import RasterStack
from pipeline.inputs.settings import ClassSpec, LabelConfig

__all__ = ["VectorLabels", "geometry_kind", "label_features", "library_warnings_to_log", "read_vector_labels"]

log = logging.getLogger(__name__)


@contextmanager
def library_warnings_to_log(path: Path) -> Iterator[None]:
    """Warnings of GDAL, pyogrio, shapely and GeoPandas while reading ``path`` go to the debug
    log, not the console: what they say about the labels is counted in the report instead."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        log.debug("%s: %s: %s", path, w.category.__name__, w.message)


def read_vector_labels(
    cfg: LabelConfig, path: Path, classes: list[ClassSpec], crs: CRS, on_unknown: str = "error"
) -> tuple[gpd.GeoDataFrame, LabelReport]:
    """Read a vector label file into a GeoDataFrame in ``crs`` with columns ``class_id``, ``group``.

    ``group`` is the 0-based row number of the feature in the file, stable across runs. A file
    without geometry (an attribute table, a CSV) is read as points from its coordinate columns
    (:func:`~pipeline.inputs.coordinates.points_from_columns`).
    """
    if not path.exists():
        raise InputError(f"{path}: label file not found")
    with library_warnings_to_log(path):
        try:
            gdf = gpd.read_file(path, layer=cfg.layer) if cfg.layer else gpd.read_file(path)
        except Exception as e:  # pyogrio raises several types; all mean "cannot read this file"
            raise InputError(f"{path}: cannot read labels ({str(e).splitlines()[0]})") from None
    return label_features(gdf, cfg, path, classes, crs, on_unknown, kind="vector")


def label_features(
    table: pd.DataFrame,
    cfg: LabelConfig,
    path: Path,
    classes: list[ClassSpec],
    crs: CRS,
    on_unknown: str,
    kind: str,
) -> tuple[gpd.GeoDataFrame, LabelReport]:
    """The labels of a table of features (a GeoDataFrame, or a DataFrame of coordinate columns)
    in ``crs``: columns ``class_id``, ``group`` (0-based row of the feature in the file) and
    ``geometry``, and the report of what could not be used.

    Every kind of vector source ends here: class names or ids matched to the class table
    (``labels.field``, ``labels.id_field``), invalid geometries repaired with ``make_valid``,
    and features without geometry or with one that cannot be repaired counted per class.
    """
    report = LabelReport(source=str(path), kind=kind)
    report.features_read = len(table)
    if table.empty:
        raise InputError(f"{path}: label file has no features")
    invalid = np.zeros(len(table), dtype=bool)
    if not isinstance(table, gpd.GeoDataFrame):
        table, invalid, report.coordinates = points_from_columns(table, cfg, path, crs)
    else:
        if cfg.x is not None:
            raise InputError(
                f"labels.x: {path} has geometries of its own; labels.x and labels.y name the coordinate "
                "columns of a table without geometry"
            )
        table = _with_crs(table, cfg, path)
    _check_fields(table, cfg, path)
    by_name, by_id = class_lookup(classes)
    gdf = table.reset_index(drop=True)
    gdf["group"] = np.arange(len(gdf), dtype=np.int64)
    ids = [to_class_id(v, by_name, by_id) for v in gdf[cfg.field]]
    unknown_mask = np.array([i is None for i in ids])
    if unknown_mask.any():
        counts = gdf.loc[unknown_mask, cfg.field].astype(str).value_counts()
        report.unknown_labels = {str(k): int(v) for k, v in counts.items()}
        if on_unknown == "error":
            ex = ", ".join(f"{k!r}" for k in list(report.unknown_labels)[:5])
            raise InputError(
                f"{path}: field {cfg.field!r} has labels not in the class table: {ex} "
                f"({int(unknown_mask.sum())} rows); add them to 'classes', fix the file, or set "
                "labels.on_unknown: drop to leave those features out"
            )
    gdf["class_id"] = [(-1 if i is None else i) for i in ids]
    keep = ~unknown_mask
    if cfg.id_field:
        other = np.array([to_class_id(v, by_name, by_id) for v in gdf[cfg.id_field]], dtype=object)
        mismatch = keep & np.array([o != i for o, i in zip(other, gdf["class_id"])])
        report.id_name_mismatches = int(mismatch.sum())
        report.mismatch_examples = [
            {"row": int(r), cfg.field: str(gdf.at[r, cfg.field]), cfg.id_field: str(gdf.at[r, cfg.id_field])}
            for r in np.flatnonzero(mismatch)[:5]
        ]
        keep &= ~mismatch
    gdf = gdf.loc[keep, ["class_id", "group", "geometry"]]
    with library_warnings_to_log(path):
        gdf, why = _repair_geometries(gdf, invalid[keep], crs)
    report.features_per_class = _geometry_table(gdf, why, by_id, classes)
    gdf = gdf.loc[(why == "ok") | (why == "repaired")]
    report.features_used = len(gdf)
    report.geometry = geometry_kind(gdf)
    if gdf.empty:
        bad = {k: int((why == k).sum()) for k in ("no_geometry", "invalid_geometry") if (why == k).any()}
        detail = "; ".join(f"{n} {UNUSABLE_REASONS[k]}" for k, n in bad.items())
        raise InputError(
            f"{path}: no usable label features after matching field {cfg.field!r} to the class table"
            + (f" ({detail})" if detail else "")
        )
    return gdf, report


def _with_crs(gdf: gpd.GeoDataFrame, cfg: LabelConfig, path: Path) -> gpd.GeoDataFrame:
    """``gdf`` with its CRS: its own, or ``labels.crs`` for a file that has none."""
    if gdf.crs is None:
        if cfg.crs is None:
            raise InputError(f"{path}: label file has no CRS; define one (e.g. a .prj file) or set labels.crs")
        return gdf.set_crs(cfg.crs)
    if cfg.crs is not None and not gdf.crs.equals(cfg.crs, ignore_axis_order=True):
        raise InputError(
            f"labels.crs: {cfg.crs} differs from the CRS of {path} ({gdf.crs.to_string()}); "
            "labels.crs is for files that have none"
        )
    return gdf


def _check_fields(gdf: pd.DataFrame, cfg: LabelConfig, path: Path) -> None:
    """``labels.field`` (and ``labels.id_field``) name columns of the file."""
    fields = ", ".join(str(c) for c in gdf.columns if c != "geometry")
    if cfg.field is None:
        raise InputError(f"labels.field: name the class field of {path} (fields: {fields})")
    for fname in filter(None, (cfg.field, cfg.id_field)):
        if fname not in gdf.columns:
            raise InputError(f"{path}: no field {fname!r} (fields: {fields})")


def _repair_geometries(gdf: gpd.GeoDataFrame, invalid: np.ndarray, crs: CRS) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """The features in ``crs``, invalid geometries repaired, and per feature ``"ok"``,
    ``"repaired"`` (usable), ``"no_geometry"`` (none, or empty) or ``"invalid_geometry"``.

    A polygon that is not valid (self-intersecting, a bow tie, a ring that crosses itself) is
    made valid with shapely's ``make_valid``, keeping its polygonal parts; one that collapses
    to a line or a point covers no area and cannot be repaired. A geometry that does not
    survive reprojection (not finite in ``crs``) cannot be used either.
    """
    geoms = gdf.geometry.to_numpy()
    why = np.full(len(gdf), "ok", dtype=object)
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    why[missing] = "no_geometry"
    why[invalid & ~missing] = "invalid_geometry"
    bad = ~missing & ~invalid & ~shapely.is_valid(geoms)
    for i in np.flatnonzero(bad):
        fixed = _polygonal_part(shapely.make_valid(geoms[i])) if _is_polygonal(geoms[i]) else None
        if fixed is None or fixed.is_empty:
            why[i] = "invalid_geometry"
        else:
            geoms[i], why[i] = fixed, "repaired"
    usable = (why == "ok") | (why == "repaired")
    geoms[~usable] = None
    gdf = gdf.set_geometry(gpd.GeoSeries(geoms, index=gdf.index, crs=gdf.crs)).to_crs(crs)
    lost = usable & ~np.isfinite(gdf.geometry.bounds.to_numpy()).all(axis=1)  # beyond the CRS's domain
    why[lost] = "invalid_geometry"
    return gdf, why


def _is_polygonal(g: BaseGeometry | None) -> bool:
    return getattr(g, "geom_type", "") in ("Polygon", "MultiPolygon")


def _polygonal_part(g: BaseGeometry) -> BaseGeometry | None:
    """The polygons of a repaired geometry (a collection's lines and points cover no area)."""
    if _is_polygonal(g):
        return g
    parts = [p for p in getattr(g, "geoms", []) if _is_polygonal(p)]
    if not parts:
        return None
    return shapely.union_all(parts)


def _geometry_table(
    gdf: gpd.GeoDataFrame, why: np.ndarray, by_id: dict[int, str], classes: list[ClassSpec]
) -> dict[str, dict[str, int]]:
    """Per class: features read, repaired, and those without a usable geometry (the rest of the
    accounting is done once the features are rasterised: :func:`_feature_accounting`)."""
    table = {c.name: {"read": 0, "used": 0, "repaired": 0, **{k: 0 for k in UNUSABLE_REASONS}} for c in classes}
    for cid, w in zip(gdf["class_id"].to_numpy(), why):
        row = table[by_id[int(cid)]]
        row["read"] += 1
        if w == "repaired":
            row["repaired"] += 1
        elif w in UNUSABLE_REASONS:
            row[str(w)] += 1
    return table


def geometry_kind(gdf: gpd.GeoDataFrame) -> str:
    """What the features are: "points", "polygons", "lines", or several joined by " and "."""
    kinds = {"Point": "points", "MultiPoint": "points", "Polygon": "polygons", "MultiPolygon": "polygons"}
    found = {kinds.get(t, "lines") for t in gdf.geom_type.dropna().unique()}
    return " and ".join(k for k in ("polygons", "points", "lines") if k in found)


def _rasterize_window(gdf: gpd.GeoDataFrame, win: Window, transform: Affine) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise geometries intersecting ``win``: (group id or -1, cover count)."""
    h, w = int(win.height), int(win.width)
    wt = window_transform(win, transform)
    bounds = rasterio.windows.bounds(win, transform)
    idx = gdf.sindex.query(box(*bounds), predicate="intersects")
    groups = np.full((h, w), -1, dtype=np.int64)
    count = np.zeros((h, w), dtype=np.int32)
    if len(idx) == 0:
        return groups, count
    sub = gdf.iloc[np.sort(idx)]
    shapes = list(zip(sub.geometry.values, sub["group"].to_numpy()))
    # int32 is GDAL's widest signed integer burn type; groups are row numbers, far below 2^31.
    groups = features.rasterize(shapes, out_shape=(h, w), transform=wt, fill=-1, dtype="int32").astype(np.int64)
    count = features.rasterize(
        ((g, 1) for g in sub.geometry.values),
        out_shape=(h, w),
        transform=wt,
        fill=0,
        dtype="int32",
        merge_alg=MergeAlg.add,
    )
    return groups, count


class VectorLabels:
    """Polygons or points of a label file, rasterised onto the image grid window by window
    (a :class:`~pipeline.inputs.label_source.LabelSource`)."""

    #: The features (``class_id``, ``group``, ``geometry`` in the image's CRS) and the report;
    #: a source of another file format of points or polygons replaces only this.
    read = staticmethod(read_vector_labels)

    def __init__(
        self,
        cfg: LabelConfig,
        path: Path,
        classes: list[ClassSpec],
        stack: RasterStack,
        on_unknown: str,
        window_size: int,
    ):
        g = stack.grid
        by_id = class_lookup(classes)[1]
        self.gdf, self.report = self.read(cfg, path, classes, g.crs, on_unknown)
        lb, gb = self.gdf.total_bounds, g.bounds
        if lb[0] >= gb[2] or lb[2] <= gb[0] or lb[1] >= gb[3] or lb[3] <= gb[1]:
            co = self.report.coordinates
            hint = (
                f"; the coordinates ({co['x']}, {co['y']}) were read in {co['crs']} (from the {co['crs_from']}): "
                "set labels.crs if they are in another CRS, or labels.x and labels.y to pick other columns"
                if co
                else ""
            )
            raise InputError(
                f"{path}: labels do not overlap the raster {stack.paths[0]} "
                f"(after reprojection to {g.crs.to_string()}){hint}"
            )
        self.stack, self.classes, self.by_id, self.window_size = stack, classes, by_id, window_size
        self.group_class = dict(zip(self.gdf["group"].to_numpy(), self.gdf["class_id"].to_numpy()))
        self.n_groups = int(self.gdf["group"].max()) + 1
        self.px_any = np.zeros(self.n_groups, np.int64)  # pixels a feature claims (alone) on the grid
        self.px_valid = np.zeros(self.n_groups, np.int64)  # ... of which have data in every band

    def windows(self) -> Iterator[tuple[Window, np.ndarray | None]]:
        return ((w, None) for w in self.stack.windows(self.window_size))

    def label(self, win: Window, values: np.ndarray | None) -> WindowLabels:
        grp, count = _rasterize_window(self.gdf, win, self.stack.grid.transform)
        self.report.pixels_overlapping_geometries += int((count > 1).sum())
        labelled = (grp >= 0) & (count == 1)
        cls = np.full(grp.shape, -1, dtype=np.int64)
        if labelled.any():
            cls[labelled] = np.vectorize(self.group_class.__getitem__, otypes=[np.int64])(grp[labelled])
        return labelled, cls, grp

    def tally(self, grp: np.ndarray, labelled: np.ndarray, kept: np.ndarray) -> None:
        self.px_any += np.bincount(grp[labelled], minlength=self.n_groups)
        self.px_valid += np.bincount(grp[kept], minlength=self.n_groups)

    def finish(self) -> None:
        _feature_accounting(
            self.report, self.gdf, self.px_any, self.px_valid, self.stack.grid.bounds, self.by_id, self.classes
        )


def _feature_accounting(
    report: LabelReport,
    gdf: gpd.GeoDataFrame,
    px_any: np.ndarray,
    px_valid: np.ndarray,
    bounds: tuple,
    by_id: dict[int, str],
    classes: list[ClassSpec],
) -> None:
    """Per class: the features used, and why the others with a geometry could not be used (added
    to what :func:`label_features` counted: features read, repaired, without usable geometry)."""
    inside = gdf.geometry.intersects(box(*bounds)).to_numpy()
    grp = gdf["group"].to_numpy()
    any_px, ok_px = px_any[grp], px_valid[grp]
    reason = np.where(
        ok_px > 0, "used", np.where(~inside, "outside_raster", np.where(any_px == 0, "no_pixel", "on_nodata"))
    )
    table = report.features_per_class
    for c in classes:
        table.setdefault(c.name, {"read": 0, "used": 0, "repaired": 0, **{k: 0 for k in UNUSABLE_REASONS}})
    for cid, r in zip(gdf["class_id"].to_numpy(), reason):
        table[by_id[int(cid)]][str(r)] += 1
    report.features_used = int((reason == "used").sum())

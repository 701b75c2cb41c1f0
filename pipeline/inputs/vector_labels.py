"""Vector labels: polygons or points of a label file, rasterised onto the image grid.

The features are reprojected to the raster's CRS and rasterised window by window (pixel
centres inside polygons; the pixel containing each point), so memory follows the window size,
not the scene. Every labelled pixel keeps the row number of its feature (``group``), which the
spatial split needs; pixels claimed by more than one geometry are left out and counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from affine import Affine
from rasterio import features
from rasterio.crs import CRS
from rasterio.enums import MergeAlg
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from shapely.geometry import box

from pipeline.core.errors import InputError
from pipeline.inputs.label_source import UNUSABLE_REASONS, LabelReport, WindowLabels, class_lookup, to_class_id
from pipeline.inputs.raster import RasterStack
from pipeline.inputs.settings import ClassSpec, LabelConfig

__all__ = ["VectorLabels", "read_vector_labels"]


def read_vector_labels(
    cfg: LabelConfig, path: Path, classes: list[ClassSpec], crs: CRS, on_unknown: str = "error"
) -> tuple[gpd.GeoDataFrame, LabelReport]:
    """Read a vector label file into a GeoDataFrame in ``crs`` with columns ``class_id``, ``group``.

    ``group`` is the 0-based row number of the feature in the file, stable across runs.
    """
    report = LabelReport(source=str(path), kind="vector")
    if not path.exists():
        raise InputError(f"{path}: label file not found")
    try:
        gdf = gpd.read_file(path, layer=cfg.layer) if cfg.layer else gpd.read_file(path)
    except Exception as e:  # pyogrio raises several types; all mean "cannot read this file"
        raise InputError(f"{path}: cannot read labels ({str(e).splitlines()[0]})") from None
    report.features_read = len(gdf)
    if gdf.empty:
        raise InputError(f"{path}: label file has no features")
    if gdf.crs is None:
        raise InputError(f"{path}: label file has no CRS; define one (e.g. a .prj file)")
    if cfg.field is None:
        raise InputError(
            f"labels.field: name the class field of {path} (fields: {', '.join(c for c in gdf.columns if c != 'geometry')})"
        )
    for fname in filter(None, (cfg.field, cfg.id_field)):
        if fname not in gdf.columns:
            raise InputError(
                f"{path}: no field {fname!r} (fields: {', '.join(c for c in gdf.columns if c != 'geometry')})"
            )
    by_name, by_id = class_lookup(classes)
    gdf = gdf.reset_index(drop=True)
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
    gdf = gdf.loc[keep & gdf.geometry.notna().to_numpy() & ~gdf.geometry.is_empty.to_numpy()]
    report.features_used = len(gdf)
    if gdf.empty:
        raise InputError(f"{path}: no usable label features after matching field {cfg.field!r} to the class table")
    gdf = gdf.to_crs(crs)[["class_id", "group", "geometry"]]
    return gdf, report


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
            raise InputError(
                f"{path}: labels do not overlap the raster {stack.paths[0]} (after reprojection to {g.crs.to_string()})"
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
    """Per class: features read, used, and why the others could not be used."""
    inside = gdf.geometry.intersects(box(*bounds)).to_numpy()
    grp = gdf["group"].to_numpy()
    any_px, ok_px = px_any[grp], px_valid[grp]
    reason = np.where(
        ok_px > 0, "used", np.where(~inside, "outside_raster", np.where(any_px == 0, "no_pixel", "on_nodata"))
    )
    table = {c.name: {"read": 0, "used": 0, **{k: 0 for k in UNUSABLE_REASONS}} for c in classes}
    for cid, r in zip(gdf["class_id"].to_numpy(), reason):
        row = table[by_id[int(cid)]]
        row["read"] += 1
        row[str(r)] += 1
    report.features_per_class = table
    report.features_used = int((reason == "used").sum())

"""Label ingestion: polygons, points or a label raster -> labelled pixels on the image grid.

Vector labels are reprojected to the raster's CRS and rasterised window by
window (pixel centres inside polygons; the pixel containing each point), so
memory follows the window size, not the scene. A label raster on any grid or
CRS is warped onto the image grid with nearest neighbour, also by window.

Every labelled pixel keeps the id of the polygon or point it came from
(``group``), which the spatial split needs. For a label raster the groups are
connected regions of one class, cut by a fixed 32-pixel grid.

Nothing is silently used: rows whose class is unknown, or whose id and name
disagree, pixels claimed by more than one geometry, and pixels under nodata
are counted in the :class:`LabelReport` with examples.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
from affine import Affine
from rasterio import features
from rasterio.crs import CRS
from rasterio.enums import MergeAlg, Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from scipy import ndimage
from shapely.geometry import box
from tqdm import tqdm

from pipeline.core.cancel import check_cancelled
from pipeline.core.errors import InputError
from pipeline.inputs.raster import RasterStack, iter_windows, open_georeferenced
from pipeline.inputs.settings import ClassSpec, LabelConfig

SAMPLE_COLUMNS = ["x", "y", "row", "col", "class_id", "class_name", "group"]


@dataclass
class LabelReport:
    source: str
    kind: str  # "vector" or "raster"
    features_read: int = 0
    features_used: int = 0
    unknown_labels: dict[str, int] = field(default_factory=dict)  # label value -> rows / pixels
    id_name_mismatches: int = 0
    mismatch_examples: list[dict] = field(default_factory=list)
    pixels_overlapping_geometries: int = 0
    pixels_under_nodata: int = 0
    pixels_per_class: dict[str, int] = field(default_factory=dict)
    # per class: labelled pixels dropped because some band has no data there
    pixels_under_nodata_per_class: dict[str, int] = field(default_factory=dict)
    # vector labels, per class: features read / used (at least one pixel on valid data) and why the
    # others could not be used: outside the raster, covering no pixel centre, only on nodata
    features_per_class: dict[str, dict[str, int]] = field(default_factory=dict)
    # classes of the table with no usable labels -> why (left out of training, or the run stops)
    classes_without_labels: dict[str, str] = field(default_factory=dict)
    # label raster, per class: its labelled pixels (on its own grid) outside the image
    label_pixels_outside_raster: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def unusable_features(self) -> dict[str, int]:
        """Features that could not be used, by reason, summed over the classes."""
        out = {k: 0 for k in UNUSABLE_REASONS}
        for row in self.features_per_class.values():
            for k in UNUSABLE_REASONS:
                out[k] += row.get(k, 0)
        return out

    def warnings(self) -> list[str]:
        out = []
        if self.unknown_labels:
            ex = ", ".join(f"{k!r} ({v})" for k, v in list(self.unknown_labels.items())[:5])
            out.append(
                f"{self.source}: dropped {sum(self.unknown_labels.values())} rows with labels not in the class table: {ex}"
            )
        if self.id_name_mismatches:
            ex = "; ".join(", ".join(f"{k}={v}" for k, v in e.items()) for e in self.mismatch_examples[:3])
            out.append(
                f"{self.source}: dropped {self.id_name_mismatches} rows whose class id and name disagree (e.g. {ex})"
            )
        if self.pixels_overlapping_geometries:
            out.append(
                f"{self.source}: dropped {self.pixels_overlapping_geometries} pixels claimed by more than one geometry"
            )
        bad = self.unusable_features()
        if any(bad.values()):
            parts = []
            for k, n in bad.items():
                if n:
                    per = ", ".join(f"{c} {row[k]}" for c, row in self.features_per_class.items() if row.get(k))
                    parts.append(f"{n} {UNUSABLE_REASONS[k]} ({per})")
            out.append(
                f"{self.source}: {sum(bad.values())} of {self.features_read} features cannot be used: "
                + "; ".join(parts)
            )
        if self.label_pixels_outside_raster:
            per = ", ".join(f"{c} {n}" for c, n in self.label_pixels_outside_raster.items())
            out.append(
                f"{self.source}: {sum(self.label_pixels_outside_raster.values())} labelled pixels lie outside "
                f"the image ({per})"
            )
        if self.pixels_under_nodata:
            per = ", ".join(f"{c} {n}" for c, n in self.pixels_under_nodata_per_class.items() if n)
            out.append(
                f"{self.source}: dropped {self.pixels_under_nodata} labelled pixels where the image has no data"
                + (f" ({per})" if per else "")
            )
        for c, why in self.classes_without_labels.items():
            out.append(f"class {c!r} has no usable labels ({why}); it is left out of training and cannot be mapped")
        return out


UNUSABLE_REASONS = {
    "outside_raster": "outside the raster",
    "no_pixel": "covering no pixel centre",
    "on_nodata": "only on pixels without data",
}


def _class_lookup(classes: list[ClassSpec]) -> tuple[dict[str, int], dict[int, str]]:
    by_name = {c.name.lower(): c.id for c in classes}
    by_id = {c.id: c.name for c in classes}
    return by_name, by_id


def to_class_id(value: object, by_name: Mapping[str, int], ids: Collection[int]) -> int | None:
    """A label cell -> its class id, or None when empty or unknown. The one rule for every label reader.

    ``by_name`` maps *lower-cased* class names to ids: names match whatever their case (class
    names that differ only by case are rejected by the config). A number, or a string of one
    (``"3"``, ``"3.0"``), is a class id when it is one of ``ids``.
    """
    if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return None
    if isinstance(value, (int, np.integer, float, np.floating)) and not isinstance(value, bool):
        return int(value) if float(value).is_integer() and int(value) in ids else None
    s = str(value).strip()
    if s.lower() in by_name:
        return by_name[s.lower()]
    try:
        f = float(s)
    except ValueError:
        return None
    return int(f) if f.is_integer() and int(f) in ids else None


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
    by_name, by_id = _class_lookup(classes)
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


class EmptyBandsError(InputError):
    """Bands with no usable data (nodata / NaN everywhere, or one constant value)."""

    def __init__(self, message: str, why: dict[str, str]):
        super().__init__(message)
        self.why = why  # band name -> what is wrong with it


@dataclass
class BandCheck:
    """Per-band tallies over the whole image, gathered while the labels are rasterised."""

    names: list[str]
    valid: np.ndarray = field(init=False)  # pixels with data, per band
    lo: np.ndarray = field(init=False)  # smallest value, per band
    hi: np.ndarray = field(init=False)  # largest value, per band
    labelled_nodata: np.ndarray = field(init=False)  # labelled pixels without data, per band

    def __post_init__(self) -> None:
        n = len(self.names)
        self.valid = np.zeros(n, np.int64)
        self.labelled_nodata = np.zeros(n, np.int64)
        self.lo = np.full(n, np.inf)
        self.hi = np.full(n, -np.inf)

    def add(self, block: np.ndarray, labelled: np.ndarray) -> None:
        fin = np.isfinite(block)
        self.valid += fin.reshape(len(self.names), -1).sum(axis=1)
        self.labelled_nodata += (~fin[:, labelled]).sum(axis=1)
        with np.errstate(invalid="ignore"):
            self.lo = np.fmin(self.lo, np.nanmin(np.where(fin, block, np.inf).reshape(len(self.names), -1), axis=1))
            self.hi = np.fmax(self.hi, np.nanmax(np.where(fin, block, -np.inf).reshape(len(self.names), -1), axis=1))

    def empty(self) -> dict[str, str]:
        """``{band: "no data" | "constant <value>"}`` for bands that carry no information."""
        out = {}
        for i, n in enumerate(self.names):
            if self.valid[i] == 0:
                out[n] = "nodata or NaN everywhere"
            elif self.lo[i] == self.hi[i]:
                out[n] = f"constant ({self.lo[i]:g}) everywhere"
        return out


def _empty_bands_error(check: BandCheck, paths: list[Path]) -> EmptyBandsError:
    bad = check.empty()
    keep = [n for n in check.names if n not in bad]
    what = "; ".join(f"{n}: {why}" for n, why in bad.items())
    fix = (
        f"select the others with rasters.bands: [{', '.join(keep)}]"
        if keep
        else "check the nodata value (rasters.nodata) and the files"
    )
    return EmptyBandsError(
        f"{paths[0]}: {len(bad)} band(s) carry no data: {what}; {fix}, or set rasters.drop_empty_bands: true", bad
    )


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


def _label_raster_windows(path: Path, stack: RasterStack, window_size: int) -> Iterator[tuple[Window, np.ndarray]]:
    """Yield (window, label values float64 with NaN = no label) of a label raster warped onto the grid."""
    with open_georeferenced(path, "label raster") as src:
        g = stack.grid
        nd = src.nodata
        with WarpedVRT(
            src,
            crs=g.crs,
            transform=g.transform,
            width=g.width,
            height=g.height,
            resampling=Resampling.nearest,
            nodata=nd if nd is not None else None,
        ) as vrt:
            for win in stack.windows(window_size):
                a = vrt.read(1, window=win, masked=True)
                vals = np.where(np.ma.getmaskarray(a), np.nan, np.ma.getdata(a).astype(np.float64))
                yield win, vals


def _label_pixels_outside(path: Path, stack: RasterStack, by_id: dict[int, str], window_size: int) -> dict[str, int]:
    """Per class: labelled pixels of a label raster (on its own grid) whose centre lies outside the image."""
    from rasterio.warp import transform_geom

    g = stack.grid
    out: dict[str, int] = {}
    with open_georeferenced(path, "label raster") as src:
        # the image footprint in the label raster's CRS, densified so that a curved edge stays close
        foot = transform_geom(
            g.crs, src.crs, box(*g.bounds).segmentize(max(g.bounds[2] - g.bounds[0], g.bounds[3] - g.bounds[1]) / 64)
        )
        for win in iter_windows(src.width, src.height, window_size):
            a = src.read(1, window=win, masked=True)
            inside = features.geometry_mask(
                [foot], out_shape=a.shape, transform=window_transform(win, src.transform), invert=True
            )
            vals = np.ma.getdata(a)
            outside = ~np.ma.getmaskarray(a) & ~inside
            if src.dtypes[0].startswith("float"):
                outside &= np.isfinite(vals)
            for v, n in zip(*np.unique(vals[outside], return_counts=True)):
                name = by_id.get(int(v)) if float(v).is_integer() else None
                if name is not None:
                    out[name] = out.get(name, 0) + int(n)
    return out


RASTER_GROUP_CELL = 32  # pixels; see _raster_groups


def _raster_groups(vals: np.ndarray, mask: np.ndarray, win: Window, first: int) -> tuple[np.ndarray, int]:
    """Group ids for a label raster: connected regions of one class, cut by a fixed 32-pixel grid.

    A dense reference raster has no polygons; one connected "forest" region may cover most of
    the scene and, kept whole, would force all of it into one split. Cutting regions by a
    fixed grid keeps groups local (the block split and its buffer do the leak prevention).
    Returns (group ids, -1 where unlabelled; next free id).
    """
    comp = np.zeros(vals.shape, dtype=np.int64)
    n_total = 0
    for cid in np.unique(vals[mask]):
        lab, n = ndimage.label(mask & (vals == cid), structure=np.ones((3, 3)))
        comp[lab > 0] = lab[lab > 0] + n_total
        n_total += n
    rows = (np.arange(vals.shape[0]) + int(win.row_off)) // RASTER_GROUP_CELL
    cols = (np.arange(vals.shape[1]) + int(win.col_off)) // RASTER_GROUP_CELL
    cell = rows[:, None] * (cols.max() + 1) + cols[None, :]
    grp = np.full(vals.shape, -1, dtype=np.int64)
    if mask.any():
        key = comp[mask] * (int(cell.max()) + 1) + cell[mask]
        _, inv = np.unique(key, return_inverse=True)
        grp[mask] = inv + first
        first += int(inv.max()) + 1
    return grp, first


#: Bytes of float32 image data read at once to find valid pixels (many bands: smaller windows).
VALID_READ_BYTES = 64 * 2**20

Thinner = Callable[[np.ndarray, np.ndarray, np.ndarray], "np.ndarray | None"]


def ingest_labels(
    cfg: LabelConfig,
    label_path: Path,
    classes: list[ClassSpec],
    stack: RasterStack,
    window_size: int = 1024,
    on_unknown: str = "error",
    progress: bool = True,
    thin: Thinner | None = None,
    on_empty_class: str = "drop",
    require_every_class: bool = True,
    allow_empty: bool = False,
) -> tuple[pd.DataFrame, LabelReport]:
    """Labelled pixels on the image grid.

    ``require_every_class`` (an error when a class has no pixel) and ``allow_empty`` (an empty
    table instead of an error when nothing is labelled) let a multi-scene run check these
    over all its scenes instead of each one.

    Returns a DataFrame with columns ``x, y, row, col, class_id, class_name, group`` (one row
    per labelled pixel with valid image data, in row-major order) and a :class:`LabelReport`
    (whose ``pixels_per_class`` counts every labelled pixel).

    Windows are streamed into compact arrays (row, col, class, group: 20 bytes a pixel, no
    Python object per pixel). ``thin(rows, cols, class_ids)``, if given, sees all of them and
    may return a bool mask of the pixels to keep (dense labels: see :mod:`pipeline.sampling.dense`);
    only those become rows of the table.

    Raises :class:`EmptyBandsError` when a band has no data anywhere or is constant, and an
    :class:`InputError` when no labelled pixel has data in every band (naming the bands that
    lack it). A class without usable labels is recorded in ``classes_without_labels`` and left
    out (``on_empty_class="drop"``) or stops the run (``"error"``).
    """
    check = BandCheck(list(stack.band_names))
    by_id = _class_lookup(classes)[1]
    # A window of many bands is large (218 bands x 1024^2 x 4 B = 0.9 GB): shrink it for the valid mask.
    window_size = max(64, min(window_size, int(np.sqrt(VALID_READ_BYTES / (4.0 * max(stack.count, 1))))))
    source: _LabelSource = (
        _RasterLabels(label_path, stack, by_id, on_unknown, window_size)
        if cfg.is_raster
        else _VectorLabels(cfg, label_path, classes, by_id, stack, on_unknown, window_size)
    )
    report = source.report
    parts = _scan_windows(source, stack, check, by_id, window_size, progress)
    source.finish()
    if check.empty():
        raise _empty_bands_error(check, stack.paths)
    if not parts and not allow_empty:
        raise _no_valid_labels_error(label_path, stack, report, check)
    rows, cols, cids, grps = _concatenate(parts)  # allow_empty: empty arrays when there are no parts
    del parts
    report.pixels_per_class = _pixels_per_class(cids, classes)
    if cfg.is_raster:
        report.features_used = report.features_read = int(np.unique(grps).size)
    if thin is not None:
        m = thin(rows, cols, cids)
        if m is not None:
            rows, cols, cids, grps = rows[m], cols[m], cids[m], grps[m]
    samples = _samples_table(stack, rows, cols, cids, grps, by_id)
    if require_every_class:  # a multi-scene run checks the classes over all its scenes
        _check_every_class(report, classes, label_path, on_empty_class)
    return samples, report


#: Labelled pixels of one window: (labelled mask, class id per pixel, group id per pixel (-1: none)).
WindowLabels = tuple[np.ndarray, np.ndarray, np.ndarray]
#: Image positions, class ids and groups of the labelled pixels with data, kept from one window.
LabelPart = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class _LabelSource(Protocol):
    """Labels of one kind (polygons and points, or a label raster), read window by window."""

    report: LabelReport

    def windows(self) -> Iterator[tuple[Window, np.ndarray | None]]:
        """The image's windows, each with what the source needs to label it (or None)."""

    def label(self, win: Window, values: np.ndarray | None) -> WindowLabels:
        """The labelled pixels of ``win`` (``values`` from :meth:`windows`)."""

    def tally(self, grp: np.ndarray, labelled: np.ndarray, kept: np.ndarray) -> None:
        """Count a window's labelled pixels and those kept (with data in every band)."""

    def finish(self) -> None:
        """Complete the report once every window is read (may raise :class:`InputError`)."""


class _VectorLabels:
    """Polygons or points of a label file, rasterised onto the image grid window by window."""

    def __init__(
        self,
        cfg: LabelConfig,
        path: Path,
        classes: list[ClassSpec],
        by_id: dict[int, str],
        stack: RasterStack,
        on_unknown: str,
        window_size: int,
    ):
        g = stack.grid
        self.gdf, self.report = read_vector_labels(cfg, path, classes, g.crs, on_unknown)
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


class _RasterLabels:
    """A label raster of class ids, warped onto the image grid window by window (nearest)."""

    def __init__(self, path: Path, stack: RasterStack, by_id: dict[int, str], on_unknown: str, window_size: int):
        self.report = LabelReport(source=str(path), kind="raster")
        if not path.exists():
            raise InputError(f"{path}: label raster not found")
        self.path, self.stack, self.by_id = path, stack, by_id
        self.on_unknown, self.window_size = on_unknown, window_size
        self.unknown: dict[str, int] = {}  # label value -> pixels
        self.next_group = 0

    def windows(self) -> Iterator[tuple[Window, np.ndarray | None]]:
        return _label_raster_windows(self.path, self.stack, self.window_size)

    def label(self, win: Window, values: np.ndarray | None) -> WindowLabels:
        if values is None:
            raise ValueError("_RasterLabels.label: a window of a label raster comes with its values")
        has = np.isfinite(values)
        cls = np.where(has, values, -1).astype(np.int64)
        known = np.isin(cls, list(self.by_id))
        for v, n in zip(*np.unique(cls[has & ~known], return_counts=True)):
            self.unknown[str(int(v))] = self.unknown.get(str(int(v)), 0) + int(n)
        labelled = has & known
        grp, self.next_group = _raster_groups(cls, labelled, win, self.next_group)
        return labelled, cls, grp

    def tally(self, grp: np.ndarray, labelled: np.ndarray, kept: np.ndarray) -> None:
        pass  # a label raster has no features to account for

    def finish(self) -> None:
        self.report.unknown_labels = self.unknown
        self.report.label_pixels_outside_raster = _label_pixels_outside(
            self.path, self.stack, self.by_id, self.window_size
        )
        if self.unknown and self.on_unknown == "error":
            ex = ", ".join(list(self.unknown)[:5])
            raise InputError(
                f"{self.path}: label raster has values not in the class table: {ex}; "
                "add them to 'classes', set the raster's nodata value for unlabelled pixels, or set "
                "labels.on_unknown: drop to leave those pixels out"
            )


def _scan_windows(
    source: _LabelSource,
    stack: RasterStack,
    check: BandCheck,
    by_id: dict[int, str],
    window_size: int,
    progress: bool,
) -> list[LabelPart]:
    """Read the image window by window: the labelled pixels with data in every band, as compact
    arrays; labelled pixels without data are counted in ``source.report`` and ``check``."""
    report, g = source.report, stack.grid
    parts: list[LabelPart] = []
    n_win = -(-g.width // window_size) * -(-g.height // window_size)
    for win, values in tqdm(
        source.windows(), total=n_win, desc="labels", unit="win", disable=not progress, leave=False
    ):
        check_cancelled()
        block = stack.read(win)
        valid = np.all(np.isfinite(block), axis=0)
        labelled, cls, grp = source.label(win, values)
        check.add(block, labelled)
        report.pixels_under_nodata += int((labelled & ~valid).sum())
        for cid, n in zip(*np.unique(cls[labelled & ~valid], return_counts=True)):
            name = by_id.get(int(cid), str(cid))
            report.pixels_under_nodata_per_class[name] = report.pixels_under_nodata_per_class.get(name, 0) + int(n)
        keep = labelled & valid
        source.tally(grp, labelled, keep)
        if not keep.any():
            continue
        rr, cc = np.nonzero(keep)
        parts.append(
            (
                (rr + int(win.row_off)).astype(np.int32),
                (cc + int(win.col_off)).astype(np.int32),
                cls[keep].astype(np.int32),
                grp[keep].astype(np.int64),
            )
        )
    return parts


def _concatenate(parts: list[LabelPart]) -> LabelPart:
    """The pixels kept from every window, as four arrays (empty ones when there are none)."""
    if not parts:
        no_rows = np.zeros(0, dtype=np.int64)
        return no_rows, no_rows, no_rows, no_rows
    rows, cols, cids, grps = (np.concatenate([p[i] for p in parts]) for i in range(4))
    return rows, cols, cids, grps


def _pixels_per_class(cids: np.ndarray, classes: list[ClassSpec]) -> dict[str, int]:
    """Labelled pixels of each class of the table (0 for a class with none)."""
    ids_sorted = np.array(sorted(c.id for c in classes), dtype=np.int64)
    per_class = np.bincount(np.searchsorted(ids_sorted, cids), minlength=len(ids_sorted))
    return {c.name: int(per_class[np.searchsorted(ids_sorted, c.id)]) for c in classes}


def _no_valid_labels_error(label_path: Path, stack: RasterStack, report: LabelReport, check: BandCheck) -> InputError:
    """No labelled pixel has data in every band: the error names the bands that lack it."""
    n_lab = report.pixels_under_nodata
    why = ", ".join(
        f"{n} ({100 * k / n_lab:.0f}% of them)" for n, k in zip(check.names, check.labelled_nodata) if k and n_lab
    )
    return InputError(
        f"{label_path}: no labelled pixels fall on valid data of {stack.paths[0]}"
        + (
            f"; {n_lab} labelled pixels lack data in band(s) {why}: check rasters.nodata, or leave "
            "those bands out with rasters.bands"
            if why
            else ""
        )
    )


def _samples_table(
    stack: RasterStack, rows: np.ndarray, cols: np.ndarray, cids: np.ndarray, grps: np.ndarray, by_id: dict[int, str]
) -> pd.DataFrame:
    """The samples table (:data:`SAMPLE_COLUMNS`) of labelled pixels, in row-major order."""
    order = np.lexsort((cols, rows))
    rows, cols, cids, grps = rows[order], cols[order], cids[order], grps[order]
    xs, ys = stack.grid.xy(rows, cols)
    samples = pd.DataFrame(
        {
            "x": xs,
            "y": ys,
            "row": rows.astype(np.int64),
            "col": cols.astype(np.int64),
            "class_id": cids.astype(np.int64),
            "group": grps,
        }
    )
    # One category per class, not one string object per pixel.
    ids_sorted = np.array(sorted(by_id), dtype=np.int64)
    samples["class_name"] = pd.Categorical.from_codes(
        np.searchsorted(ids_sorted, cids), [by_id[int(i)] for i in ids_sorted]
    ).astype(str)
    return samples[SAMPLE_COLUMNS]


def _check_every_class(report: LabelReport, classes: list[ClassSpec], label_path: Path, on_empty_class: str) -> None:
    """Record the classes without usable labels; stop on one if ``on_empty_class`` is "error",
    and when fewer than two classes are left."""
    for name in (n for n, v in report.pixels_per_class.items() if v == 0):
        report.classes_without_labels[name] = _why_no_labels(report, name)
    empty = list(report.classes_without_labels)
    if empty and on_empty_class == "error":
        raise InputError(
            f"classes: class {empty[0]!r} has no labelled pixels on valid data in {label_path} "
            f"({report.classes_without_labels[empty[0]]}); add labels for it or remove it from 'classes'"
        )
    if len(classes) - len(empty) < 2:
        raise InputError(
            f"{label_path}: only {len(classes) - len(empty)} class(es) have usable labels; "
            + "; ".join(f"{c}: {w}" for c, w in report.classes_without_labels.items())
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


def _why_no_labels(report: LabelReport, name: str) -> str:
    row = report.features_per_class.get(name)
    if row is not None:
        if row["read"] == 0:
            return "no feature of the label file has this class"
        parts = [f"{row[k]} {UNUSABLE_REASONS[k]}" for k in UNUSABLE_REASONS if row.get(k)]
        return f"{row['read']} feature(s): " + ", ".join(parts)
    nod = report.pixels_under_nodata_per_class.get(name, 0)
    out = report.label_pixels_outside_raster.get(name, 0)
    if nod or out:
        return ", ".join(
            t
            for t in (
                f"{out} labelled pixels outside the image" if out else "",
                f"{nod} labelled pixels where the image has no data" if nod else "",
            )
            if t
        )
    return "no labelled pixel in the raster"

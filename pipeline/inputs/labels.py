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
are counted in the :class:`~pipeline.inputs.label_source.LabelReport` with examples.

Each kind of label source is read by a module of its own (:mod:`pipeline.inputs.vector_labels`,
:mod:`pipeline.inputs.point_labels` for tables of points, :mod:`pipeline.inputs.raster_labels`);
:data:`LABEL_SOURCES` names them. This module reads the
image window by window, keeps the labelled pixels with data in every band, and does the
accounting every kind shares.

Adding a kind of label source
-----------------------------
1. write a module ``pipeline/inputs/<kind>_labels.py`` with a class that satisfies
   :class:`~pipeline.inputs.label_source.LabelSource` and opens with the arguments of
   :data:`~pipeline.inputs.label_source.OpenLabelSource`. A source of points or polygons can
   subclass :class:`~pipeline.inputs.vector_labels.VectorLabels` and replace only its ``read``
   (a GeoDataFrame with ``class_id``, ``group`` and ``geometry`` in the image's CRS, and the
   report; :func:`~pipeline.inputs.vector_labels.label_features` makes both from a table), so
   that it is rasterised and accounted for alike, as :mod:`pipeline.inputs.point_labels` does;
2. add it to :data:`LABEL_SOURCES`, and teach :func:`label_kind` to recognise its ``labels.path``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.core.cancel import check_cancelled
from pipeline.core.errors import InputError
from pipeline.inputs.label_source import UNUSABLE_REASONS, LabelReport, LabelSource, OpenLabelSource, class_lookup
from pipeline.inputs.point_labels import PointTableLabels
from pipeline.inputs.raster import RasterStack
from pipeline.inputs.raster_labels import RasterLabels
from pipeline.inputs.settings import ClassSpec, LabelConfig
from pipeline.inputs.vector_labels import VectorLabels

__all__ = ["LABEL_SOURCES", "SAMPLE_COLUMNS", "BandCheck", "EmptyBandsError", "ingest_labels", "label_kind"]

SAMPLE_COLUMNS = ["x", "y", "row", "col", "class_id", "class_name", "group"]

#: Kind of label source -> how to open it (see "Adding a kind of label source" above).
LABEL_SOURCES: dict[str, OpenLabelSource] = {
    "vector": VectorLabels,
    "table": PointTableLabels,
    "raster": RasterLabels,
}


def label_kind(cfg: LabelConfig) -> str:
    """The kind of ``labels.path``, a key of :data:`LABEL_SOURCES`: a label raster or a table of
    points by its suffix (:attr:`~pipeline.inputs.settings.LabelConfig.is_raster`,
    :attr:`~pipeline.inputs.settings.LabelConfig.is_table`), otherwise a vector file."""
    return "raster" if cfg.is_raster else "table" if cfg.is_table else "vector"


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
    """The bands without information, and the settings that get around them."""
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
    per labelled pixel with valid image data, in row-major order) and a
    :class:`~pipeline.inputs.label_source.LabelReport` (whose ``pixels_per_class`` counts every labelled pixel).

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
    by_id = class_lookup(classes)[1]
    # A window of many bands is large (218 bands x 1024^2 x 4 B = 0.9 GB): shrink it for the valid mask.
    window_size = max(64, min(window_size, int(np.sqrt(VALID_READ_BYTES / (4.0 * max(stack.count, 1))))))
    source: LabelSource = LABEL_SOURCES[label_kind(cfg)](cfg, label_path, classes, stack, on_unknown, window_size)
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
    if thin is not None:
        m = thin(rows, cols, cids)
        if m is not None:
            rows, cols, cids, grps = rows[m], cols[m], cids[m], grps[m]
    samples = _samples_table(stack, rows, cols, cids, grps, by_id)
    if require_every_class:  # a multi-scene run checks the classes over all its scenes
        _check_every_class(report, classes, label_path, on_empty_class)
    return samples, report


#: Image positions, class ids and groups of the labelled pixels with data, kept from one window.
LabelPart = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _scan_windows(
    source: LabelSource,
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


def _why_no_labels(report: LabelReport, name: str) -> str:
    """Why class ``name`` has no usable labels, from what the report counted."""
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

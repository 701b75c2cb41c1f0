"""Raster labels: a label raster of class ids, warped onto the image grid.

A label raster on any grid or CRS is warped onto the image grid with nearest neighbour, window
by window. Its nodata value marks unlabelled pixels; a raster that declares none takes 0 as
unlabelled background when 0 is not a class (:data:`BACKGROUND_VALUE`, counted and reported). Its groups (what the spatial split keeps whole) are connected regions of one class,
cut by a fixed 32-pixel grid (:data:`RASTER_GROUP_CELL`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from rasterio import features
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from scipy import ndimage
from shapely.geometry import box

from pipeline.core.errors import InputError
from pipeline.inputs.label_source import LabelReport, WindowLabels, class_lookup
from pipeline.inputs.raster import RasterStack, iter_windows, open_georeferenced
from pipeline.inputs.settings import ClassSpec, LabelConfig

__all__ = ["BACKGROUND_VALUE", "RASTER_GROUP_CELL", "RasterLabels"]


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
BACKGROUND_VALUE = 0  # "no label" in a label raster without nodata, unless 0 is a class


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


class RasterLabels:
    """A label raster of class ids, warped onto the image grid window by window (nearest; a
    :class:`~pipeline.inputs.label_source.LabelSource`). ``cfg`` is not read: the path says it all."""

    def __init__(
        self,
        cfg: LabelConfig,
        path: Path,
        classes: list[ClassSpec],
        stack: RasterStack,
        on_unknown: str,
        window_size: int,
    ):
        self.report = LabelReport(source=str(path), kind="raster", geometry="regions")
        if not path.exists():
            raise InputError(f"{path}: label raster not found")
        self.path, self.stack, self.by_id = path, stack, class_lookup(classes)[1]
        with open_georeferenced(path, "label raster") as src:
            declared = src.nodata
        # The common convention: 0 is "no label" in a label raster that declares no nodata and
        # whose class table has no class 0 (counted and reported, not an unknown class).
        self.background = BACKGROUND_VALUE if declared is None and BACKGROUND_VALUE not in self.by_id else None
        self.on_unknown, self.window_size = on_unknown, window_size
        self.unknown: dict[str, int] = {}  # label value -> pixels
        self.next_group = 0
        self.groups_kept = 0  # groups with a kept pixel: a window's groups are its own

    def windows(self) -> Iterator[tuple[Window, np.ndarray | None]]:
        return _label_raster_windows(self.path, self.stack, self.window_size)

    def label(self, win: Window, values: np.ndarray | None) -> WindowLabels:
        if values is None:
            raise ValueError("RasterLabels.label: a window of a label raster comes with its values")
        has = np.isfinite(values)
        cls = np.where(has, values, -1).astype(np.int64)
        if self.background is not None:
            bg = has & (cls == self.background)
            self.report.background_pixels += int(bg.sum())
            has &= ~bg
        known = np.isin(cls, list(self.by_id))
        for v, n in zip(*np.unique(cls[has & ~known], return_counts=True)):
            self.unknown[str(int(v))] = self.unknown.get(str(int(v)), 0) + int(n)
        labelled = has & known
        grp, self.next_group = _raster_groups(cls, labelled, win, self.next_group)
        return labelled, cls, grp

    def tally(self, grp: np.ndarray, labelled: np.ndarray, kept: np.ndarray) -> None:
        # a label raster has no features to account for; its groups (regions) count as features
        self.groups_kept += int(np.unique(grp[kept]).size)

    def finish(self) -> None:
        self.report.features_used = self.report.features_read = self.groups_kept
        if self.report.background_pixels:
            self.report.background_value = self.background
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

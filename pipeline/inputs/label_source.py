"""What every kind of label source provides and fills, and the one rule for reading a class.

A label source (polygons and points of a vector file, a label raster, ...) is read window by
window on the image grid: :class:`LabelSource` is what :func:`pipeline.inputs.labels.ingest_labels`
asks of it, :class:`LabelReport` what it records about the labels it could not use, and
:func:`to_class_id` the one rule that turns a label cell into a class id. A new kind of source
is a module with a class of this shape, registered in :data:`pipeline.inputs.labels.LABEL_SOURCES`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from rasterio.windows import Window

from pipeline.inputs.raster import RasterStack
from pipeline.inputs.settings import ClassSpec, LabelConfig

__all__ = [
    "UNUSABLE_REASONS",
    "LabelReport",
    "LabelSource",
    "OpenLabelSource",
    "WindowLabels",
    "class_lookup",
    "to_class_id",
]


@dataclass
class LabelReport:
    """What one label source yielded, and what it could not use and why (with examples)."""

    source: str
    kind: str  # a key of pipeline.inputs.labels.LABEL_SOURCES: "vector", "points" or "raster"
    # what one label is: "polygons", "points", "lines" (or several, joined by " and ") for vector
    # labels, "regions" for a label raster; the report names the split's groups after it
    geometry: str = ""
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
    # label raster without nodata whose value 0 is no class: 0 is taken as unlabelled background
    background_value: int | None = None
    background_pixels: int = 0
    # a table of coordinates: its coordinate columns and the CRS they were read in
    coordinates: dict[str, str] = field(default_factory=dict)

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
        repaired = sum(row.get("repaired", 0) for row in self.features_per_class.values())
        if repaired:
            per = ", ".join(
                f"{c} {row['repaired']}" for c, row in self.features_per_class.items() if row.get("repaired")
            )
            what = "geometry" if repaired == 1 else "geometries"
            out.append(f"{self.source}: repaired {repaired} invalid {what} with make_valid ({per})")
        if self.background_pixels:
            out.append(
                f"{self.source}: value {self.background_value} is no class and the raster declares no nodata; "
                f"its {self.background_pixels} pixels are taken as unlabelled background (set the raster's "
                f"nodata, or add class {self.background_value} to the class table, to say otherwise)"
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


#: Why a feature (polygon, point) could not be used: key in labels.json -> words of the warnings.
UNUSABLE_REASONS = {
    "outside_raster": "outside the raster",
    "no_pixel": "covering no pixel centre",
    "on_nodata": "only on pixels without data",
    "no_geometry": "without geometry (empty, or no coordinates)",
    "invalid_geometry": "with an invalid geometry that cannot be repaired",
}


def class_lookup(classes: list[ClassSpec]) -> tuple[dict[str, int], dict[int, str]]:
    """``({lower-cased class name: id}, {id: name})`` of the class table."""
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


#: Labelled pixels of one window: (labelled mask, class id per pixel, group id per pixel (-1: none)).
WindowLabels = tuple[np.ndarray, np.ndarray, np.ndarray]


class LabelSource(Protocol):
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


#: How :func:`~pipeline.inputs.labels.ingest_labels` opens a source of one kind (the source's
#: class): ``(labels settings, label file, class table, image, labels.on_unknown, window size)``.
OpenLabelSource = Callable[[LabelConfig, Path, list[ClassSpec], RasterStack, str, int], LabelSource]

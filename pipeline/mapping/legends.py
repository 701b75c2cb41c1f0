"""Legends and styles an analyst opens beside a map: a legend image for every class map and
every confidence raster, and the confidence raster's encoding and QGIS style.

Confidence encoding (:data:`CONFIDENCE_NODATA`, :func:`encode_confidence`): a uint8 band of
whole percent, 0..100, with 255 where the input has no data. The model's confidence in [0, 1]
is rounded to the nearest percent (half to even, as :func:`numpy.rint`), so a value read back
is within 0.5 percentage points of what the model said. That is 1 byte a pixel instead of
float32's 4, and DEFLATE packs 101 levels far better than float mantissas.

Legend images are PNGs named ``<map stem>_legend.png`` (:func:`legend_path`), drawn with
matplotlib's object API (no pyplot: no global figure state).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.atomic import write_figure, write_text
from pipeline.inputs.class_table import ClassTable

CONFIDENCE_NODATA = 255  # where the input had no valid data
CONFIDENCE_UNIT = "%"
CONFIDENCE_DESCRIPTION = "confidence of the model in the mapped class, percent (0-100); 255 = no data"
# The colour ramp of the confidence style and legend, low to high: red (doubtful), yellow, green (sure).
CONFIDENCE_RAMP = ((0, "#d7191c"), (50, "#ffffbf"), (100, "#1a9641"))


def legend_path(map_path: str | Path) -> Path:
    """``<dir>/<stem>_legend.png``: the legend image beside a class map or confidence raster."""
    p = Path(map_path)
    return p.with_name(f"{p.stem}_legend.png")


def encode_confidence(conf: np.ndarray) -> np.ndarray:
    """Confidence in [0, 1] (NaN where no data), any shape -> uint8 percent, 255 where NaN."""
    c = np.asarray(conf, dtype=np.float32)
    valid = np.isfinite(c)
    out = np.full(c.shape, CONFIDENCE_NODATA, dtype=np.uint8)
    out[valid] = np.rint(np.clip(c[valid], 0.0, 1.0) * 100.0).astype(np.uint8)
    return out


def decode_confidence(pct: np.ndarray) -> np.ndarray:
    """uint8 percent as written by :func:`encode_confidence` -> float32 in [0, 1], NaN where 255."""
    p = np.asarray(pct)
    out = p.astype(np.float32) / 100.0
    out[p == CONFIDENCE_NODATA] = np.nan
    return out


def _save(fig: Any, path: Path) -> Path:
    write_figure(path, fig, format="png", dpi=100, bbox_inches="tight")
    return path


def write_class_legend(path: str | Path, classes: ClassTable, title: str = "classes") -> Path:
    """A PNG legend: one colour patch and name per class, in the class table's order."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    fig = Figure(figsize=(2.6, 0.32 * len(classes.ids) + 0.5))
    handles = [Patch(facecolor=c, edgecolor="#444444", label=n) for n, c in zip(classes.names, classes.colors)]
    fig.legend(handles=handles, loc="center", frameon=False, title=title)
    return _save(fig, Path(path))


def write_confidence_legend(path: str | Path, title: str = "confidence (%)") -> Path:
    """A PNG colour bar of the confidence style (:data:`CONFIDENCE_RAMP`), 0-100 %."""
    from matplotlib.colorbar import ColorbarBase
    from matplotlib.colors import LinearSegmentedColormap, Normalize
    from matplotlib.figure import Figure

    cmap = LinearSegmentedColormap.from_list("confidence", [(v / 100, c) for v, c in CONFIDENCE_RAMP])
    fig = Figure(figsize=(1.3, 3.0))
    ax = fig.add_axes((0.15, 0.05, 0.25, 0.85))
    ColorbarBase(ax, cmap=cmap, norm=Normalize(0, 100), ticks=[0, 25, 50, 75, 100])
    ax.set_title(title, fontsize=9, loc="left")
    return _save(fig, Path(path))


def confidence_qml() -> str:
    """QGIS layer style for a confidence raster: a pseudocolour ramp over 0-100 %, nodata transparent."""
    root = ET.Element("qgis", version="3.28.0", styleCategories="Symbology")
    pipe = ET.SubElement(root, "pipe")
    ren = ET.SubElement(
        pipe,
        "rasterrenderer",
        type="singlebandpseudocolor",
        band="1",
        opacity="1",
        alphaBand="-1",
        nodataColor="",
        classificationMin="0",
        classificationMax="100",
    )
    ET.SubElement(ren, "rasterTransparency")
    shader = ET.SubElement(ET.SubElement(ren, "rastershader"), "colorrampshader")
    shader.set("colorRampType", "INTERPOLATED")
    shader.set("classificationMode", "1")
    shader.set("clip", "0")
    shader.set("minimumValue", "0")
    shader.set("maximumValue", "100")
    for v, c in CONFIDENCE_RAMP:
        ET.SubElement(shader, "item", value=str(v), color=c, alpha="255", label=f"{v} %")
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(pipe, "huesaturation", saturation="0", grayscaleMode="0", colorizeOn="0")
    ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
    ET.SubElement(root, "blendMode").text = "0"
    ET.indent(root)
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(root, encoding="unicode") + "\n"


def confidence_sidecar_paths(conf_path: str | Path) -> dict[str, Path]:
    """Where the sidecars of a confidence raster live: ``{"qml": x.qml, "legend": x_legend.png}``."""
    p = Path(conf_path)
    return {"qml": p.with_suffix(".qml"), "legend": legend_path(p)}


def write_confidence_sidecars(conf_path: str | Path) -> list[Path]:
    """The QGIS style and the legend image of a confidence raster (each written atomically)."""
    paths = confidence_sidecar_paths(conf_path)
    write_text(paths["qml"], confidence_qml())
    write_confidence_legend(paths["legend"])
    return list(paths.values())

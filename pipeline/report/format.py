"""Values and names as report text: numbers to fixed decimals, names as literal Markdown.

Accuracies, kappa, F1 and p-values to 3 decimals, seconds and distances to 2 decimals (1 from
10 up), mapping speeds to 3 significant digits, areas in hectares to 1 decimal; a missing value
is "–". Also used by the batch summary (:mod:`pipeline.runner.batch`).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np


def fmt(v: Any, kind: str = "acc") -> str:
    """Format one value for the report; ``None``/missing -> ``"–"``."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if kind == "acc":
        return f"{v:.3f}"
    if kind == "sec":
        return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"
    if kind == "speed":
        return f"{v:.3g}"
    if kind == "len":  # block sizes, buffers: degrees need significant digits, not 2 decimals (0.0033 -> "0.00")
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    if kind == "ha":
        return f"{v:,.1f}"
    if kind == "int":
        return f"{int(v):,d}"
    if kind == "pct":
        return f"{100 * v:.1f}%"
    if kind == "p":
        return "< 0.001" if v < 0.001 else f"{v:.3f}"
    return str(v)


def fmt_ci(ci: Any, kind: str = "acc") -> str:
    if not ci or len(ci) != 2 or ci[0] is None or ci[1] is None:
        return "–"
    return f"[{fmt(ci[0], kind)}, {fmt(ci[1], kind)}]"


def fmt_pm(v: Any, half: Any, kind: str = "acc") -> str:
    if v is None:
        return "–"
    return fmt(v, kind) if half is None else f"{fmt(v, kind)} ± {fmt(half, kind)}"


_MD_SPECIAL = re.compile(r"([\\`*\[\]|~])")


def md_text(text: Any, line_start: bool = False) -> str:
    """``text`` as literal Markdown: names from the data (classes, bands, runs, files) cannot
    open a link, image, code span, emphasis, table cell or raw HTML, nor break the line.

    The counterpart of ``html.escape`` for report.html: characters that open Markdown syntax
    are backslash-escaped, ``<``, ``>`` and ``&`` become HTML entities (Markdown passes raw
    HTML through), an underscore that could open emphasis is escaped, and line breaks and
    other control characters become spaces. ``line_start``: the text begins a line (a
    paragraph), so a leading ``#``, ``-``, ``+``, ``=`` or ``1.`` must not make a heading or list.
    """
    s = "".join(" " if (ord(ch) < 32 or ord(ch) == 127) else ch for ch in str(text))
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _MD_SPECIAL.sub(r"\\\1", s)
    s = re.sub(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])", r"\\_", s)  # intraword underscores are no emphasis
    if line_start:
        s = re.sub(r"^(\s*)([#+=-])", r"\1\\\2", s)
        s = re.sub(r"^(\s*\d+)([.)])", r"\1\\\2", s)
    return s


def polygon_name(d: dict, noun: str = "polygon") -> str:
    """How the report names a reference label (a ``metrics.json`` polygons entry): its scene, if
    any, and its number: "feature N" for a polygon, point or line (its 0-based row in the label
    file); "labelled region N" for a label raster's region (the pipeline's own number: a raster
    has no rows, so the report adds where it lies, :func:`label_where`)."""
    word = noun if noun == LABEL_NOUNS["regions"] else "feature"
    return (f"{d['scene']}: " if d.get("scene") else "") + f"{word} {d['group']}"


def label_where(d: dict) -> str:
    """Where a reference label lies: " at (x, y)", the mean of its test pixels' map coordinates
    ("" when the entry has none). What finds a labelled region, which has no row in any file."""
    return f" at ({d['x']:.0f}, {d['y']:.0f})" if d.get("x") is not None and d.get("y") is not None else ""


#: What one label (one group the split keeps whole) is called, by labels.json "geometry".
LABEL_NOUNS = {"polygons": "polygon", "points": "point", "regions": "labelled region", "lines": "line"}


def label_noun(labels: dict) -> str:
    """The word for one label of a run (``labels``: labels.json, or metrics.json "labels"):
    "polygon", "point", "labelled region" (a label raster's connected pixels of one class, cut by
    a fixed grid), or "feature" for a mix; "polygon" for a run that predates the record."""
    kinds = str(labels.get("geometry") or "polygons").split(" and ")
    return LABEL_NOUNS.get(kinds[0], "feature") if len(set(kinds)) == 1 else "feature"

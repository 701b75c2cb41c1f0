"""The figures made while building a report (matplotlib, imported when a figure is drawn):
learning curves without a PNG, map quicklooks without a PNG, the
class legend and the spectra of suspect reference polygons. Each is written into the report's
figure folder (``report_files/``) and its path returned; ``None`` where it cannot be drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.atomic import write_figure
from pipeline.inputs.class_table import parse_color
from pipeline.report.format import polygon_name


def _save_fig(fig: Any, path: Path) -> Path:
    return write_figure(path, fig, dpi=100, bbox_inches="tight")


def _hex_rgb(color: str) -> tuple[float, float, float]:
    r, g, b = parse_color(color)
    return r / 255, g / 255, b / 255


def _series(curves: list[dict], key: str) -> list[float]:
    """``key`` of every epoch's record; NaN where an epoch has none (no validation set): a gap in
    the line, as matplotlib draws a None."""
    return [float("nan") if c.get(key) is None else float(c[key]) for c in curves]


def curve_figure(model: str, curves: list[dict], out: Path, chosen_epoch: int | None = None) -> Path | None:
    """Training and validation loss and validation macro-F1 per epoch; ``chosen_epoch``, the epoch
    whose weights the model kept, is marked by a vertical line."""
    from matplotlib.figure import Figure

    if not curves:
        return None
    ep = _series(curves, "epoch")
    fig = Figure(figsize=(5, 3.2))
    ax = fig.add_subplot()
    for key, style in (("train_loss", "-"), ("val_loss", "--")):
        ax.plot(ep, _series(curves, key), style, label=key.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2 = ax.twinx()
    ax2.plot(ep, _series(curves, "val_macro_f1"), ":", color="tab:green", label="val macro-F1")
    ax2.set_ylabel("macro-F1")
    if chosen_epoch is not None:
        ax.axvline(chosen_epoch, color="0.35", lw=1, ls="-.", label=f"kept: epoch {chosen_epoch}")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8)
    ax.set_title(model, fontsize=10)
    return _save_fig(fig, out)


def quicklook(map_path: Path, classes: list[dict], out: Path, max_px: int = 600) -> Path | None:
    """Render a class map read decimated (nearest) with the class colours; nodata white."""
    import rasterio
    from matplotlib.figure import Figure
    from rasterio.enums import Resampling

    try:
        with rasterio.open(map_path) as src:
            scale = max(src.width, src.height) / max_px
            h = max(1, int(round(src.height / max(scale, 1))))
            w = max(1, int(round(src.width / max(scale, 1))))
            data = src.read(1, out_shape=(h, w), resampling=Resampling.nearest)
    except Exception:
        return None
    rgb = np.ones(data.shape + (3,))
    for c in classes:
        rgb[data == int(c["id"])] = _hex_rgb(c.get("color", "#808080"))
    fig = Figure(figsize=(4.2, 4.2 * h / w))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(rgb, interpolation="nearest")
    ax.set_axis_off()
    return _save_fig(fig, out)


def legend_figure(classes: list[dict], out: Path) -> Path | None:
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if not classes:
        return None
    fig = Figure(figsize=(2.4, 0.35 * len(classes) + 0.4))
    handles = [Patch(facecolor=c.get("color", "#808080"), edgecolor="#444", label=c["name"]) for c in classes]
    fig.legend(handles=handles, loc="center", frameon=False, title="classes")
    return _save_fig(fig, out)


def _band_ticks(bands: Sequence[str], max_ticks: int = 10) -> tuple[list[int], list[str]]:
    """Positions and names of at most ``max_ticks`` evenly spaced band ticks (first band included).

    A 60-band raster gets every sixth name, so the axis of a spectrum plot stays legible.
    """
    step = max(1, -(-len(bands) // max_ticks))
    pos = list(range(0, len(bands), step))
    return pos, [str(bands[i]) for i in pos]


def spectra_figure(suspects: list[dict], colors: dict[str, str], out: Path, noun: str = "polygon") -> Path | None:
    from matplotlib.figure import Figure

    n = len(suspects)
    fig = Figure(figsize=(min(4.2 * n, 12.6), 3.4 * ((n + 2) // 3)))
    for i, d in enumerate(suspects):
        ax = fig.add_subplot((n + 2) // 3, min(n, 3), i + 1)
        x = np.arange(len(d["bands"]))

        def arr(v: list) -> np.ndarray:
            return np.array([np.nan if a is None else a for a in v], dtype=float)

        for key, style, label in (
            ("class_training", "-", d["class_name"]),
            ("predicted_training", "--", d["predicted_as"]),
        ):
            t = d.get(key) or {}
            name = d["class_name"] if key == "class_training" else d["predicted_as"]
            if not t.get("pixels"):
                continue
            col = colors.get(name, "#808080")
            ax.fill_between(x, arr(t["p10"]), arr(t["p90"]), color=col, alpha=0.25, lw=0)
            ax.plot(x, arr(t["mean"]), style, color=col, label=f"{label} training ({t['pixels']} px)")
        ax.plot(x, arr(d["polygon"]["mean"]), "o-", color="black", label=f"{polygon_name(d, noun)} ({d['pixels']} px)")
        ticks, names = _band_ticks(d["bands"])
        # Rotated when there are several: band names side by side overlap into a black bar otherwise.
        ax.set_xticks(
            ticks, names, fontsize=8, rotation=45 if len(ticks) > 5 else 0, ha="right" if len(ticks) > 5 else "center"
        )
        ax.set_ylabel("band value (raster units)", fontsize=8)
        ax.set_title(f"{polygon_name(d, noun)}: labelled {d['class_name']}", fontsize=9)
        ax.legend(fontsize=7)
    return _save_fig(fig, out)

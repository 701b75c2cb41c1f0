"""The comparison report analysts read: ``report.html`` (self-contained) and ``report.md``.

Everything is read from the run directory (``metrics.json``, ``config.yaml``,
``manifest.json``, ``split_map.png``, ``maps/``, ``curves/``); nothing is
estimated here. Every number shown is a value of those files, formatted:
accuracies, kappa, F1 and p-values to 3 decimals, seconds and distances to 2 decimals
(1 from 10 up),
mapping speeds to 3 significant digits, areas in hectares to 1 decimal.

Figures made here (confusion-matrix heat maps, learning curves without a PNG,
map quicklooks without a PNG, the legend) go to ``report_files/``; the
Markdown references images by relative path, the HTML embeds them as base64
data URIs with inline CSS, so it opens anywhere without the run directory.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import re
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.atomic import atomic_path, write_text
from pipeline.inputs.class_table import parse_color

FIG_DIR = "report_files"
#: Layout rule of the HTML report: the page is at most ``PAGE_WIDTH_PX`` wide, table cells do not
#: wrap, and every table built by the report (six models included) fits that width at 1400-px
#: browser width; tests/test_report.py checks it in headless Chromium. A table that would not fit
#: scrolls inside its own box instead of overflowing the page.
PAGE_WIDTH_PX = 1200
#: Text cells longer than this (characters) may wrap.
LONG_CELL = 40
#: Cells shown right-aligned: numbers (with separators, signs, ``±`` half-widths, ``%``), intervals, "–".
NUMERIC_CELL = re.compile(r"(–|[<>]?\s*[-+]?[\d,.]+(%|x)?(\s*±\s*[\d,.]+)?|\[[-\d,. ]+\])")
SIGNIFICANCE = 0.05


# ---------------------------------------------------------------------------- formatting
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


# ---------------------------------------------------------------------------- document model
class _Doc:
    """A tiny document: headings, paragraphs, tables and image rows, rendered to MD and HTML."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.blocks: list[tuple] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str, strong: bool = False) -> None:
        self.blocks.append(("p", text, strong))

    def table(
        self, rows: list[dict[str, Any]], highlight: set[int] | None = None, headers: list[str] | None = None
    ) -> None:
        """A table of rows given as ``{header: cell}``; an empty list adds nothing.

        The headers are the rows' keys in first-seen order (or ``headers``), and
        every cell is looked up by its header, so a row can never shift a column;
        a key missing from a row shows "–". ``highlight`` holds row indices to
        show in bold. A cell is a string, or ``{"text", "color"}`` for a swatch.
        """
        if not rows:
            return
        if headers is None:
            headers = list(dict.fromkeys(k for r in rows for k in r))
        cells = [[r.get(h, "–") for h in headers] for r in rows]
        self.blocks.append(("table", headers, cells, highlight or set()))

    def images(self, items: Sequence[tuple[Path | None, str]]) -> None:
        """A row of images (absolute paths inside the run dir) with captions; a figure that could
        not be drawn (None) or is missing is left out."""
        kept = [(p, c) for p, c in items if p is not None and Path(p).is_file()]
        if kept:
            self.blocks.append(("images", kept))

    # -- markdown
    @staticmethod
    def _md_cell(c: Any) -> str:
        if isinstance(c, dict):  # colour swatch
            return f"{md_text(c['text'])} ({md_text(c['color'])})"
        return md_text(c)

    def markdown(self) -> str:
        out: list[str] = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + md_text(b[2]))
            elif b[0] == "p":
                out.append(f"**{md_text(b[1])}**" if b[2] else md_text(b[1], line_start=True))
            elif b[0] == "table":
                _, headers, rows, hi = b
                out.append("| " + " | ".join(md_text(h) for h in headers) + " |")
                out.append("|" + "|".join(["---"] * len(headers)) + "|")
                for i, r in enumerate(rows):
                    cells = [self._md_cell(c) for c in r]
                    if i in hi:
                        cells = [f"**{c}**" if c and c != "–" else c for c in cells]
                    out.append("| " + " | ".join(cells) + " |")
            elif b[0] == "images":
                items = b[1]
                rel = [urllib.parse.quote(p.relative_to(self.run_dir).as_posix()) for p, _ in items]
                out.append("| " + " | ".join(md_text(c) for _, c in items) + " |")
                out.append("|" + "|".join(["---"] * len(items)) + "|")
                out.append("| " + " | ".join(f"![{md_text(c)}]({r})" for (_, c), r in zip(items, rel)) + " |")
            out.append("")
        return "\n".join(out)

    # -- html
    @staticmethod
    def _html_cell(c: Any) -> str:
        if isinstance(c, dict):
            return (
                f'<span class="sw" style="background:{html.escape(c["color"])}"></span>'
                f"{html.escape(c['text'])} <code>{html.escape(c['color'])}</code>"
            )
        return html.escape(str(c))

    @staticmethod
    def _numeric(c: Any) -> bool:
        """Numbers, intervals, percentages, "–" and empty cells: right-aligned columns."""
        return not isinstance(c, dict) and (str(c).strip() == "" or bool(NUMERIC_CELL.fullmatch(str(c).strip())))

    @staticmethod
    def _text_class(c: Any) -> str:
        """Cells of a text column are left-aligned ("t"); long texts (paths, lists) may wrap ("w").
        No other cell wraps (see PAGE_WIDTH_PX)."""
        return ' class="w"' if not isinstance(c, dict) and len(str(c)) > LONG_CELL else ' class="t"'

    @staticmethod
    def _figure_class(path: Path) -> str:
        """Wide figures (e.g. two-panel learning curves) get twice the width of a thumbnail."""
        import struct

        with open(path, "rb") as f:
            head = f.read(24)
        if head[:8] != b"\x89PNG\r\n\x1a\n":  # the size of a PNG is in its header (IHDR)
            return ""
        w, h = struct.unpack(">II", head[16:24])
        return ' class="wide"' if w > 1.6 * h else ""

    @staticmethod
    def _data_uri(path: Path) -> str:
        mime = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
        return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")

    def html(self, title: str) -> str:
        body: list[str] = []
        for b in self.blocks:
            if b[0] == "h":
                body.append(f"<h{b[1]}>{html.escape(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                t = html.escape(b[1])
                body.append(f'<p class="key">{t}</p>' if b[2] else f"<p>{t}</p>")
            elif b[0] == "table":
                _, headers, rows, hi = b
                numeric = [all(self._numeric(r[j]) for r in rows) for j in range(len(headers))]
                th_cls = ["" if n else ' class="t"' for n in numeric]
                parts = [
                    '<div class="scroll"><table><thead><tr>'
                    + "".join(
                        # headers may break after "_" (model names), so a table of six models stays narrow
                        f"<th{th_cls[j]}>{html.escape(h).replace('_', '_<wbr>')}</th>"
                        for j, h in enumerate(headers)
                    )
                    + "</tr></thead><tbody>"
                ]
                for i, r in enumerate(rows):
                    cls = ' class="best"' if i in hi else ""
                    parts.append(
                        f"<tr{cls}>"
                        + "".join(
                            f"<td{'' if numeric[j] else self._text_class(c)}>{self._html_cell(c)}</td>"
                            for j, c in enumerate(r)
                        )
                        + "</tr>"
                    )
                parts.append("</tbody></table></div>")
                body.append("".join(parts))
            elif b[0] == "images":
                figs = "".join(
                    f'<figure{self._figure_class(p)}><img alt="{html.escape(c)}" src="{self._data_uri(p)}">'
                    f"<figcaption>{html.escape(c)}</figcaption></figure>"
                    for p, c in b[1]
                )
                body.append(f'<div class="row">{figs}</div>')
        css = (
            f"body{{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:{PAGE_WIDTH_PX}px;margin:2em auto;"
            "padding:0 1em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}"
            "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}"
            "td{white-space:nowrap}.t{text-align:left}td.w{text-align:left;white-space:normal;min-width:20em}"
            "td:first-child,th:first-child{text-align:left}tr.best td{background:#e6f4e6;font-weight:600}"
            ".sw{display:inline-block;width:1em;height:1em;border:1px solid #555;margin-right:.4em;"
            "vertical-align:middle}.row{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}"
            "figure img{max-width:380px;height:auto;border:1px solid #ddd}figcaption{font-size:.9em;color:#555}"
            "figure.wide img{max-width:580px}"
            ".row figure:only-child img{max-width:100%}.scroll{overflow-x:auto}"
            "p.key{font-size:1.1em;background:#fff8e1;padding:.6em;border-left:4px solid #f0b400}"
            "code{font-size:.85em;color:#666}"
        )
        return (
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{css}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
        )


# ---------------------------------------------------------------------------- figures
def _save_fig(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    return path


def _hex_rgb(color: str) -> tuple[float, float, float]:
    r, g, b = parse_color(color)
    return r / 255, g / 255, b / 255


def _confusion_figure(model: str, cm: dict, out: Path) -> Path | None:
    from matplotlib.figure import Figure

    labels = cm.get("labels") or []
    mat = np.asarray(cm.get("matrix") or [], dtype=float)
    if not labels or mat.shape != (len(labels), len(labels)):
        return None
    rows = mat.sum(axis=1, keepdims=True)
    norm = np.divide(mat, rows, out=np.zeros_like(mat), where=rows > 0)
    q = len(labels)
    size = 1.2 + 0.55 * q
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(q):
        for j in range(q):
            ax.text(
                j,
                i,
                f"{int(mat[i, j])}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(q), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(q), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(model, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="row share")
    return _save_fig(fig, out)


def _series(curves: list[dict], key: str) -> list[float]:
    """``key`` of every epoch's record; NaN where an epoch has none (no validation set): a gap in
    the line, as matplotlib draws a None."""
    return [float("nan") if c.get(key) is None else float(c[key]) for c in curves]


def _curve_figure(model: str, curves: list[dict], out: Path) -> Path | None:
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
    ax2 = ax.twinx()
    ax2.plot(ep, _series(curves, "val_macro_f1"), ":", color="tab:green", label="val macro-F1")
    ax2.set_ylabel("macro-F1")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8)
    ax.set_title(model, fontsize=10)
    return _save_fig(fig, out)


def _quicklook(map_path: Path, classes: list[dict], out: Path, max_px: int = 600) -> Path | None:
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


def _legend_figure(classes: list[dict], out: Path) -> Path | None:
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if not classes:
        return None
    fig = Figure(figsize=(2.4, 0.35 * len(classes) + 0.4))
    handles = [Patch(facecolor=c.get("color", "#808080"), edgecolor="#444", label=c["name"]) for c in classes]
    fig.legend(handles=handles, loc="center", frameon=False, title="classes")
    return _save_fig(fig, out)


# ---------------------------------------------------------------------------- helpers
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _read_yaml(path: Path) -> Any:
    try:
        import yaml

        return yaml.safe_load(path.read_text())
    except Exception:
        return None


def rank_models(models: dict[str, dict]) -> list[str]:
    """Model names by overall accuracy (then kappa), best first; missing values last."""

    def key(m: str) -> tuple:
        r = models[m]
        oa, ka = r.get("overall_accuracy"), r.get("kappa")
        return (-(oa if oa is not None else -1.0), -(ka if ka is not None else -2.0))

    return sorted(models, key=key)


def _pair(pairwise: list[dict], a: str, b: str) -> dict | None:
    for d in pairwise or []:
        if {d.get("a"), d.get("b")} == {a, b}:
            return d
    return None


def significance_sentence(models: dict[str, dict], pairwise: list[dict]) -> str:
    """One sentence: which model is best and whether its lead over the runner-up is significant."""
    order = rank_models(models)
    if not order:
        return "No model was evaluated."
    best = order[0]
    oa = models[best].get("overall_accuracy")
    s = f"Best model: {best} (overall accuracy {fmt(oa)})."
    if len(order) == 1:
        return s + " It is the only model in this run."
    second = order[1]
    s += f" Runner-up: {second} ({fmt(models[second].get('overall_accuracy'))})."
    d = _pair(pairwise, best, second)
    if d is None or d.get("p_value") is None:
        return s + " No McNemar test between the two is recorded, so the significance of the lead is unknown."
    p = d["p_value"]
    if p < SIGNIFICANCE:
        return s + f" The lead is statistically significant (McNemar test on the same test pixels, p {_p_text(p)})."
    return s + (
        f" The lead is not statistically significant (McNemar test on the same test pixels, p {_p_text(p)}):"
        " on this test set the two cannot be told apart."
    )


def _p_text(p: float) -> str:
    t = fmt(p, "p")
    return t if t.startswith("<") else f"= {t}"


def comparison_rows(metrics: dict) -> list[dict[str, str]]:
    """The side-by-side model table as formatted strings, best model first (also the Prefect artifact)."""
    models = metrics.get("models") or {}
    rows = []
    for m in rank_models(models):
        r = models[m]
        ci = r.get("ci95") or {}
        rows.append(
            {
                "model": m,
                "overall_accuracy": fmt(r.get("overall_accuracy")),
                "overall_accuracy_ci95": fmt_ci(ci.get("overall_accuracy")),
                "kappa": fmt(r.get("kappa")),
                "kappa_ci95": fmt_ci(ci.get("kappa")),
                "macro_f1": fmt(r.get("macro_f1")),
                "macro_f1_ci95": fmt_ci(ci.get("macro_f1")),
                "fit_seconds": fmt(r.get("fit_seconds"), "sec"),
                "predict_mpx_per_s": fmt(r.get("predict_mpx_per_s"), "speed"),
                "epochs": "–"
                if r.get("epochs_run") is None
                else f"{r['epochs_run']}" + ("" if r.get("best_epoch") is None else f" (best {r['best_epoch']})"),
            }
        )
    return rows


# ---------------------------------------------------------------------------- the report
@dataclass
class ReportContext:
    """Everything a report section may read, loaded once from the run directory.

    ``order`` is the model names ranked best first (:func:`rank_models`);
    ``figs`` is the folder for figures made while building the report.
    """

    run_dir: Path
    metrics: dict
    cfg: dict
    manifest: dict
    classes: list[dict] = field(default_factory=list)
    models: dict[str, dict] = field(default_factory=dict)
    split: dict = field(default_factory=dict)
    pairwise: list[dict] = field(default_factory=list)
    contrast: dict = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    @property
    def figs(self) -> Path:
        return self.run_dir / FIG_DIR

    @classmethod
    def load(cls, run_dir: Path) -> ReportContext:
        metrics = _read_json(run_dir / "metrics.json")
        if not isinstance(metrics, dict):
            from pipeline.core.errors import InputError

            raise InputError(f"{run_dir / 'metrics.json'}: missing or not valid JSON; run the assess stage first")
        models = metrics.get("models") or {}
        cfg = _read_yaml(run_dir / "config.yaml")
        return cls(
            run_dir=run_dir,
            metrics=metrics,
            cfg=cfg if isinstance(cfg, dict) else {},
            manifest=_read_json(run_dir / "manifest.json") or {},
            classes=metrics.get("classes") or [],
            models=models,
            split=metrics.get("split") or {},
            pairwise=metrics.get("pairwise") or [],
            contrast=metrics.get("random_split_contrast") or {},
            order=rank_models(models),
        )

    def per_class(self, model: str, cls_name: str) -> dict:
        """``metrics.json`` per-class entry of one model and class (empty when absent)."""
        return (self.models[model].get("per_class") or {}).get(cls_name) or {}


def headline_text(metrics: dict) -> str:
    """The report's headline: leakage warning, then the inconclusive verdict or the best model
    (:func:`pipeline.evaluation.evidence.headline` over ``metrics.json["evidence"]``)."""
    from pipeline.evaluation.evidence import headline

    text = headline(
        metrics.get("evidence"), significance_sentence(metrics.get("models") or {}, metrics.get("pairwise") or [])
    )
    failed = metrics.get("failed_models") or {}
    if failed:
        text += f" {len(failed)} model(s) failed: {', '.join(failed)} (see Failed models)."
    return text


def section_headline(doc: _Doc, ctx: ReportContext) -> None:
    doc.p(headline_text(ctx.metrics), strong=True)


def section_failed_models(doc: _Doc, ctx: ReportContext) -> None:
    """Models that failed (stage and one-line reason): they are in no table below."""
    failed = ctx.metrics.get("failed_models") or {}
    if not failed:
        return
    doc.h(2, "Failed models")
    doc.p(
        f"{len(failed)} model(s) failed and are missing from every table and map below; the other models "
        "were trained, mapped and assessed as usual. The full traceback is in run.log."
    )
    doc.table([{"model": m, "stage": f.get("stage", "?"), "reason": f.get("reason", "?")} for m, f in failed.items()])


def section_run_summary(doc: _Doc, ctx: ReportContext) -> None:
    cfg, manifest = ctx.cfg, ctx.manifest
    doc.h(2, "Run summary")
    facts = [{"item": "run directory", "value": ctx.run_dir.name}]
    ras = (cfg.get("rasters") or {}).get("paths") if isinstance(cfg.get("rasters"), dict) else None
    if ras:
        facts.append({"item": "image", "value": ", ".join(map(str, ras if isinstance(ras, list) else [ras]))})
    if isinstance(cfg.get("labels"), dict) and cfg["labels"].get("path"):
        facts.append({"item": "labels", "value": str(cfg["labels"]["path"])})
    if cfg.get("seed") is not None:
        facts.append({"item": "seed", "value": str(cfg["seed"])})
    for k, label in (
        ("started", "started"),
        ("finished", "finished"),
        ("device", "device"),
        ("git_commit", "git commit"),
    ):
        if manifest.get(k):
            facts.append({"item": label, "value": str(manifest[k])})
    doc.table(facts)
    doc.table(
        [
            {
                "stage": s.get("name", "?"),
                "seconds": fmt(s.get("seconds"), "sec"),
                "cached": "yes" if s.get("cached") else "no",
            }
            for s in manifest.get("stages") or []
        ]
    )


def section_classes(doc: _Doc, ctx: ReportContext) -> None:
    doc.h(3, "Classes")
    lab_px = (ctx.metrics.get("labels") or {}).get("pixels_per_class") or {}
    samp = (ctx.metrics.get("labels") or {}).get("sampling") or {}
    rows = [
        {
            "id": str(c["id"]),
            "class": {"text": c["name"], "color": c.get("color", "#808080")},
            "labelled pixels": fmt(lab_px.get(c["name"]), "int") if c["name"] in lab_px else "–",
        }
        for c in ctx.classes
    ]
    if samp.get("active"):
        after = samp.get("split_counts_after") or {}
        for r, c in zip(rows, ctx.classes):
            for part in ("train", "validation", "test"):
                r[f"sampled {part}"] = fmt((after.get(part) or {}).get(c["name"]), "int")
    doc.table(rows)
    if samp.get("active"):
        caps = samp.get("caps") or {}
        cap_txt = (
            f"at most {fmt(caps.get('train'), 'int')} training, {fmt(caps.get('validation'), 'int')} "
            f"validation and {fmt(caps.get('test'), 'int')} test samples per class"
            if "train" in caps
            else f"at most {fmt(caps.get('fold'), 'int')} samples per class and fold"
        )
        thinned = {k: v for k, v in (samp.get("thinning_stride") or {}).items() if v and v > 1}
        th = (
            (
                " Before the split, "
                + ", ".join(f"{k} was thinned to a {v}-pixel lattice" for k, v in thinned.items())
                + " (uniform over the scene, so the split sees the labelled layout)."
            )
            if thinned
            else ""
        )
        doc.p(
            f"Sampling: {samp.get('reason', '')}. The split was decided first; then {cap_txt} were drawn, "
            f"shared evenly across the blocks of each split, so the test set keeps its spatial design. "
            f"{fmt(samp.get('samples_after'), 'int')} samples of {fmt(sum(lab_px.values()), 'int')} labelled "
            f"pixels are used; class areas and area estimates below come from the full maps.{th}"
        )


def section_unusable_labels(doc: _Doc, ctx: ReportContext) -> None:
    """Labels that could not be used, per class and reason; classes and bands left out."""
    lab = ctx.metrics.get("labels") or {}
    per = lab.get("features_per_class") or {}
    reasons = {
        "outside_raster": "outside the raster",
        "no_pixel": "covering no pixel centre",
        "on_nodata": "only on nodata",
    }
    nod_px = lab.get("pixels_under_nodata_per_class") or {}
    bad = any(r.get(k) for r in per.values() for k in reasons) or any(nod_px.values())
    empty = lab.get("classes_without_labels") or {}
    unknown = lab.get("unknown_labels") or {}
    dropped_bands = lab.get("dropped_bands") or {}
    by_model = {m: d for m, r in ctx.models.items() if (d := r.get("dropped_classes"))}
    outside_px = lab.get("label_pixels_outside_raster") or {}
    if not (bad or empty or unknown or dropped_bands or by_model or outside_px):
        return
    doc.h(3, "Labels and bands that could not be used")
    if per and bad:
        doc.p(
            f"{lab.get('features_used', '?')} of {lab.get('features_read', '?')} label features were used. "
            "A feature is unusable when it lies outside the raster, covers no pixel centre, or only covers "
            "pixels where some band has no data."
        )
        doc.table(
            [
                {
                    "class": c,
                    "features": fmt(r.get("read"), "int"),
                    "used": fmt(r.get("used"), "int"),
                    **{v: fmt(r.get(k), "int") for k, v in reasons.items()},
                    "labelled pixels on nodata": fmt(nod_px.get(c, 0), "int"),
                }
                for c, r in per.items()
            ]
        )
    elif any(nod_px.values()):
        doc.table([{"class": c, "labelled pixels on nodata": fmt(n, "int")} for c, n in nod_px.items()])
    if outside_px:
        doc.p(
            "Labelled pixels of the label raster outside the image (on the label raster's grid): "
            + ", ".join(f"{c} {fmt(n, 'int')}" for c, n in outside_px.items())
            + "."
        )
    if unknown:
        doc.p(
            "Labels not in the class table (dropped): "
            + ", ".join(f"{k} ({fmt(v, 'int')})" for k, v in unknown.items())
            + "."
        )
    for c, why in empty.items():
        doc.p(
            f"Class {c} has no usable labels ({why}): it was left out of training and no model can map it.", strong=True
        )
    for m, d in by_model.items():
        doc.p(
            f"{m} left out class(es) "
            + "; ".join(f"{c} ({w})" for c, w in d.items())
            + ": this model never predicts them.",
            strong=True,
        )
    if dropped_bands:
        doc.p(
            "Bands dropped because they carry no data (rasters.drop_empty_bands): "
            + "; ".join(f"{b} ({w})" for b, w in dropped_bands.items())
            + "."
        )


def _split_evidence(split: dict) -> str:
    """What the test of this split measures, in one sentence or two."""
    strategy, group_by = split.get("strategy"), split.get("group_by")
    sub = split.get("sub_blocked_classes") or []
    if strategy == "random":
        return (
            "Random pixel split: test pixels sit next to training pixels of the same polygons, so the "
            "accuracy measures recall of known places, not generalisation (see the leakage audit)."
        )
    if strategy == "predefined":
        return (
            f"User-supplied split ({split.get('source', 'as given')}), honoured as given with no buffer; "
            "the leakage audit below says whether training patches see test pixels."
        )
    if group_by == "scene":
        return "Whole scenes are held out: the test measures generalisation to unseen scenes."
    if sub:
        who = "all classes" if group_by == "block" else "the classes " + ", ".join(map(str, sub))
        rest = "" if group_by == "block" else " The other classes are tested on unseen polygons."
        return (
            f"For {who}, polygons were cut into sub-blocks (group = polygon x block): their test measures "
            "generalisation to unseen parts of the same polygons, spatially separated by the buffer, which "
            f"is weaker evidence than unseen polygons.{rest}"
        )
    return "Every polygon lies whole on one side: the test measures generalisation to unseen polygons."


def _split_unit(run_dir: Path) -> str:
    """Unit of block size and buffer: that of the split layers' CRS ("m", "degree"), else "map units"."""
    try:
        import pyogrio
        from pyproj import CRS

        crs = pyogrio.read_info(run_dir / "splits.gpkg", layer="blocks").get("crs")
        unit = CRS.from_user_input(crs).axis_info[0].unit_name if crs else ""
    except Exception:  # an older run or no split layers: the generic word is still true
        return "map units"
    return {"metre": "m", "": "map units"}.get(unit, unit)


def section_split(doc: _Doc, ctx: ReportContext) -> None:
    split = ctx.split
    if not split:
        return
    doc.h(3, "Split")
    unit = _split_unit(ctx.run_dir)
    doc.p(
        f"Strategy: {split.get('strategy', '?')}; block size: {fmt(split.get('block_size'), 'len')} {unit}; "
        f"buffer: {fmt(split.get('buffer'), 'len')} {unit}; seed: {split.get('seed', '–')}; "
        f"samples dropped by the buffer: {fmt(split.get('dropped_by_buffer'), 'int')}."
    )
    if split.get("k"):
        doc.p(f"Folds: {split['k']} (the tables show the first fold's counts).")
    doc.p(_split_evidence(split))
    missing = {k: v for k, v in (split.get("missing_classes") or {}).items() if v}
    for part, names in missing.items():
        doc.p(f"Classes with no {part} samples: {', '.join(map(str, names))}.")
    counts = split.get("counts") or {}
    parts = [s for s in ("train", "validation", "test") if s in counts]
    if parts:
        doc.table(
            [
                {"class": c["name"], **{s: fmt((counts[s] or {}).get(c["name"], 0), "int") for s in parts}}
                for c in ctx.classes
            ]
        )
    doc.images([(ctx.run_dir / "split_map.png", "split map")])


def section_audit(doc: _Doc, ctx: ReportContext) -> None:
    audit = ctx.split.get("audit") or {}
    if audit:
        doc.h(3, "Leakage audit")
        doc.table([{"check": k.replace("_", " "), "value": _audit_val(v)} for k, v in audit.items()])


def section_random_vs_spatial(doc: _Doc, ctx: ReportContext) -> None:
    if not ctx.contrast:
        return
    doc.h(3, "Random versus spatial split")
    doc.p(
        "Overall accuracy of the same model fitted and tested on a random pixel split and on the spatial "
        "split; the gap is the optimism of a random split."
    )
    doc.table(
        [
            {
                "model": m,
                "random split OA": fmt(v.get("overall_accuracy_random")),
                "spatial split OA": fmt(v.get("overall_accuracy_spatial")),
                "gap": fmt(v.get("gap")),
            }
            for m, v in ctx.contrast.items()
        ]
    )


#: Report headers of the :func:`comparison_rows` keys (the Prefect artifact keeps the keys).
COMPARISON_HEADERS = {
    "model": "model",
    "overall_accuracy": "overall accuracy",
    "overall_accuracy_ci95": "OA 95% CI",
    "kappa": "kappa",
    "kappa_ci95": "kappa 95% CI",
    "macro_f1": "macro-F1",
    "macro_f1_ci95": "macro-F1 95% CI",
    "fit_seconds": "fit (s)",
    "predict_mpx_per_s": "mapping (Mpx/s)",
    "epochs": "epochs",
}


def section_comparison(doc: _Doc, ctx: ReportContext) -> None:
    doc.h(2, "Model comparison")
    ev = ctx.metrics.get("evidence") or {}
    weak = ev.get("conclusive") is False
    rows = [{COMPARISON_HEADERS.get(k, k): v for k, v in r.items()} for r in comparison_rows(ctx.metrics)]
    if weak:
        ts = ev.get("test_set") or {}
        doc.p(
            f"Test split of {fmt(ts.get('pixels'), 'int')} pixels from {fmt(ts.get('blocks'), 'int')} "
            f"block(s) and {fmt(ts.get('polygons'), 'int')} polygon(s): the evaluation is inconclusive "
            f"({'; '.join(ev.get('reasons') or [])}). Intervals marked † come from a handful of pixels or "
            "places and are not reliable ranges; the order of the rows is not a ranking.",
            strong=True,
        )
        for r in rows:
            for k in r:
                if "CI" in k and r[k] not in ("–", ""):
                    r[k] = f"{r[k]} †"
    else:
        doc.p(
            "Test split; 95% confidence intervals from a bootstrap over spatial blocks. Ranked by overall "
            "accuracy; the best model is highlighted."
        )
    doc.table(rows, highlight={0} if rows and not weak else set(), headers=list(COMPARISON_HEADERS.values()))


MAX_SCENE_QUICKLOOKS = 24  # scene maps drawn in the report (of the best model); the rest are listed in metrics.json


def section_scenes(doc: _Doc, ctx: ReportContext) -> None:
    """Per-scene accuracy of every model and the best model's map of each scene (multi-scene runs)."""
    scenes = ctx.metrics.get("scenes") or {}
    if not scenes:
        return
    doc.h(2, "Scenes")
    across = ctx.split.get("audit_across_scenes") or {}
    zones = across.get("crs_zones")
    doc.p(
        f"{len(scenes)} scenes; the figures above pool the test pixels of all of them. Below, each model's "
        "accuracy on the test pixels of each scene alone (– where a scene has no test pixel). Scenes that "
        "share a CRS were audited together for leakage"
        + (
            f" ({zones} CRS {'zone' if zones == 1 else 'zones'}; patches touching test pixels across scenes: "
            f"{fmt(across.get('train_patches_touching_test_pixels'), 'int')})."
            if across
            else "."
        )
    )
    rows = []
    for name, sc in scenes.items():
        counts = sc.get("split_counts") or {}
        row = {
            "scene": name,
            "labelled pixels": fmt(sc.get("samples"), "int") if sc.get("labelled") else "none",
            "train / val. / test": " / ".join(fmt(counts.get(k, 0), "int") for k in ("train", "validation", "test")),
        }
        for m in ctx.order:
            r = (sc.get("models") or {}).get(m) or {}
            oa = r.get("overall_accuracy")
            row[f"{m} OA"] = "–" if oa is None else f"{fmt(oa)} (n={fmt(r.get('test_samples'), 'int')})"
        rows.append(row)
    doc.table(rows)
    if not ctx.order:
        return
    best = ctx.order[0]
    items = []
    for name, sc in list(scenes.items())[:MAX_SCENE_QUICKLOOKS]:
        tif = ctx.run_dir / ((sc.get("maps") or {}).get(best) or f"maps/{name}/{best}.tif")
        if tif.is_file():
            items.append((_quicklook(tif, ctx.classes, ctx.figs / f"map_{name}_{best}.png"), f"{name} ({best})"))
    if items:
        more = len(scenes) - MAX_SCENE_QUICKLOOKS
        # An inconclusive evaluation names no best model (headline): neither may this caption.
        conclusive = (ctx.metrics.get("evidence") or {}).get("conclusive", True)
        who = (
            f"the best model ({best})"
            if conclusive
            else f"{best} (first in the table; the evaluation is inconclusive, so this is not a ranking)"
        )
        doc.p(f"Maps of {who} per scene" + (f"; {more} more scenes are in maps/<scene>/." if more > 0 else "."))
        doc.images(items + [(_legend_figure(ctx.classes, ctx.figs / "legend.png"), "legend")])


def section_pairwise(doc: _Doc, ctx: ReportContext) -> None:
    if not ctx.pairwise:
        return
    doc.h(3, "Pairwise McNemar tests")
    doc.table(
        [
            {
                "model A": d.get("a", "?"),
                "model B": d.get("b", "?"),
                "statistic": fmt(d.get("statistic")),
                "p-value": fmt(d.get("p_value"), "p"),
                "significant at 0.05": "–"
                if d.get("p_value") is None
                else ("yes" if d["p_value"] < SIGNIFICANCE else "no"),
            }
            for d in ctx.pairwise
        ]
    )


#: Per-class metrics of metrics.json and the headings of their report tables.
PER_CLASS_METRICS = {"precision": "User's accuracy (precision)", "recall": "Producer's accuracy (recall)", "f1": "F1"}


def class_flags(ctx: ReportContext) -> dict[str, str]:
    """Classes an analyst must look at: no test pixels, or no test pixel classified right by any model."""
    flags = {}
    for c in ctx.classes:
        support = [ctx.per_class(m, c["name"]).get("support") for m in ctx.order]
        recall = [ctx.per_class(m, c["name"]).get("recall") for m in ctx.order]
        if not any(support):
            flags[c["name"]] = "no test pixels"
        elif all(r is not None and r == 0 for r in recall):
            flags[c["name"]] = "no model gets a test pixel right"
    return flags


def section_per_class(doc: _Doc, ctx: ReportContext) -> None:
    if not (ctx.order and ctx.classes):
        return
    doc.h(2, "Per-class accuracy")
    doc.p(
        "Test split, per pixel. User's accuracy (precision): of the pixels mapped as the class, the share that "
        "is the class; producer's accuracy (recall): of the class's test pixels, the share mapped as it. "
        '"–" is undefined: precision of a class the model never predicts, recall of a class with no test pixels.'
    )
    flags = class_flags(ctx)
    if flags:
        doc.p("Flagged classes: " + "; ".join(f"{n} ({why})" for n, why in flags.items()) + ".", strong=True)
    for i, (key, title) in enumerate(PER_CLASS_METRICS.items()):
        doc.h(3, title)
        rows = []
        for c in ctx.classes:
            row: dict[str, Any] = {"class": c["name"]}
            if i == 0:
                support = next(
                    (s for m in ctx.order if (s := ctx.per_class(m, c["name"]).get("support")) is not None), None
                )
                row["test pixels"] = fmt(support, "int")
            row.update({m: fmt(ctx.per_class(m, c["name"]).get(key)) for m in ctx.order})
            if i == 0 and flags:
                row["flag"] = flags.get(c["name"], "")
            rows.append(row)
        doc.table(rows)


#: Rows of the per-polygon table shown in the report (worst first); metrics.json keeps them all.
POLYGON_ROWS = 20


def _polygon_name(d: dict) -> str:
    return (f"{d['scene']}: " if d.get("scene") else "") + f"feature {d['group']}"


def section_reference_polygons(doc: _Doc, ctx: ReportContext) -> None:
    pol = ctx.metrics.get("polygons") or {}
    rows, models = pol.get("polygons") or [], pol.get("models") or []
    if not rows:
        return
    below = pol.get("contradicted_below", 0.5)
    doc.h(2, "Reference polygons")
    doc.p(
        "Each test polygon (feature: its 0-based row in the label file) with the share of its test pixels that "
        f"each model maps as its label, worst first. A polygon that every model maps as its label for less than "
        f"{fmt(below, 'pct')} of its pixels is flagged: a wrong label, a change between the image and the "
        "reference date, or a class the training data does not cover is then more likely than a model error."
    )
    doc.table(
        [
            {
                "polygon": _polygon_name(d),
                "class": d["class_name"],
                "test pixels": fmt(d["pixels"], "int"),
                **{m: fmt((d.get("accuracy") or {}).get(m)) for m in models},
                "mean": fmt(d.get("mean_accuracy")),
                "mapped as": d.get("predicted_as", "–"),
                "flag": "every model disagrees" if d.get("contradicted") else "",
            }
            for d in rows[:POLYGON_ROWS]
        ]
    )
    if len(rows) > POLYGON_ROWS:
        doc.p(f"{len(rows) - POLYGON_ROWS} more polygons in metrics.json (polygons).")
    suspects = pol.get("suspects") or []
    for d in suspects:
        doc.p(_suspect_sentence(d, next((r for r in rows if _polygon_name(r) == _polygon_name(d)), {})), strong=True)
    if suspects:
        colors = {c["name"]: c.get("color", "#808080") for c in ctx.classes}
        doc.images(
            [
                (
                    _spectra_figure(suspects, colors, ctx.figs / "suspect_spectra.png"),
                    "suspect polygons: mean spectrum against the training spectra (10-90% band)",
                )
            ]
        )


def _suspect_sentence(d: dict, row: dict) -> str:
    where = f" around ({row['x']:.0f}, {row['y']:.0f})" if row.get("x") is not None else ""
    name = _polygon_name(d)
    s = (
        f"{name[0].upper()}{name[1:]} ({d['class_name']}, {fmt(d['pixels'], 'int')} test pixels{where}) is "
        f"contradicted by every model; they map it mostly as {d['predicted_as']}."
    )
    t, mean = d.get("class_training") or {}, (d.get("polygon") or {}).get("mean") or []
    ratio = [(b, r) for b, r in zip(d.get("bands") or [], d.get("ratio") or []) if r is not None]
    if not t.get("pixels") or not ratio:
        return s + f" There are no {d['class_name']} training pixels to compare its spectrum with."
    lo, hi = min(ratio, key=lambda x: x[1]), max(ratio, key=lambda x: x[1])
    s += (
        f" Its mean spectrum is {lo[1]:.1f}x ({lo[0]}) to {hi[1]:.1f}x ({hi[0]}) the mean of the class's "
        f"{fmt(t['pixels'], 'int')} training pixels"
    )
    outside = [
        b
        for b, v, a, z in zip(d["bands"], mean, t.get("p10") or [], t.get("p90") or [])
        if None not in (v, a, z) and not a <= v <= z
    ]
    if outside and (hi[1] >= 2 or lo[1] <= 0.5):
        return s + (
            f", outside their 10-90% range in {', '.join(outside)}: a likely label or date error; "
            "check the polygon against the image."
        )
    if outside:
        return s + f", outside their 10-90% range in {', '.join(outside)}: check the polygon against the image."
    return s + (
        ", within their 10-90% range in every band: the class is spectrally confused here rather than "
        "obviously mislabelled."
    )


def _band_ticks(bands: Sequence[str], max_ticks: int = 10) -> tuple[list[int], list[str]]:
    """Positions and names of at most ``max_ticks`` evenly spaced band ticks (first band included).

    A 60-band raster gets every sixth name, so the axis of a spectrum plot stays legible.
    """
    step = max(1, -(-len(bands) // max_ticks))
    pos = list(range(0, len(bands), step))
    return pos, [str(bands[i]) for i in pos]


def _spectra_figure(suspects: list[dict], colors: dict[str, str], out: Path) -> Path | None:
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
        ax.plot(x, arr(d["polygon"]["mean"]), "o-", color="black", label=f"{_polygon_name(d)} ({d['pixels']} px)")
        ticks, names = _band_ticks(d["bands"])
        # Rotated when there are several: band names side by side overlap into a black bar otherwise.
        ax.set_xticks(
            ticks, names, fontsize=8, rotation=45 if len(ticks) > 5 else 0, ha="right" if len(ticks) > 5 else "center"
        )
        ax.set_ylabel("band value (raster units)", fontsize=8)
        ax.set_title(f"{_polygon_name(d)}: labelled {d['class_name']}", fontsize=9)
        ax.legend(fontsize=7)
    return _save_fig(fig, out)


def section_confusion(doc: _Doc, ctx: ReportContext) -> None:
    if not (ctx.order and ctx.classes):
        return
    doc.h(2, "Confusion matrices")
    doc.p("Rows: reference class; columns: predicted class; cells: test pixels; colour: share of the row.")
    doc.images(
        [
            (_confusion_figure(m, ctx.models[m].get("confusion_matrix") or {}, ctx.figs / f"confusion_{m}.png"), m)
            for m in ctx.order
        ]
    )


def section_learning_curves(doc: _Doc, ctx: ReportContext) -> None:
    items: list[tuple[Path | None, str]] = []  # None: a figure that could not be drawn
    for m in ctx.order:
        png = ctx.run_dir / "curves" / f"{m}.png"
        if png.is_file():
            items.append((png, m))
            continue
        data = _read_json(ctx.run_dir / "curves" / f"{m}.json")
        if isinstance(data, list) and data:
            items.append((_curve_figure(m, data, ctx.figs / f"curve_{m}.png"), m))
    if items:
        doc.h(2, "Learning curves")
        doc.images(items)


def section_maps(doc: _Doc, ctx: ReportContext) -> None:
    items: list[tuple[Path | None, str]] = []  # None: a figure that could not be drawn
    for m in ctx.order:
        png, tif = ctx.run_dir / "maps" / f"{m}.png", ctx.run_dir / "maps" / f"{m}.tif"
        if png.is_file():
            items.append((png, m))
        elif tif.is_file():
            items.append((_quicklook(tif, ctx.classes, ctx.figs / f"map_{m}.png"), m))
    if items:
        doc.h(2, "Maps")
        doc.images(items + [(_legend_figure(ctx.classes, ctx.figs / "legend.png"), "legend")])


#: What each model's confidence layer holds (a model's ``fit_info["confidence"]`` overrides it).
CONFIDENCE_KINDS = {
    "random_forest": "share of trees voting for the class",
    "max_likelihood": "posterior probability",
    "svm": "share of one-vs-one contests won (not a probability)",
    "ovo_vote_share": "share of one-vs-one contests won (not a probability)",
    "cnn": "softmax probability",
    "resnet": "softmax probability",
}


def section_confidence(doc: _Doc, ctx: ReportContext) -> None:
    models = [m for m in ctx.order if ctx.models[m].get("confidence")]
    if not models:
        return
    doc.h(2, "Confidence layers")
    doc.p(
        "maps/<model>_confidence.tif holds each model's confidence in its label. On the test pixels: how many "
        "distinct values it takes, its mean where the model is right and where it is wrong, and the AUC of "
        "confidence for telling right from wrong (0.5: no better than chance)."
    )
    rows, bad = [], []
    for m in models:
        c = ctx.models[m]["confidence"]
        kind = (ctx.models[m].get("fit_info") or {}).get("confidence")
        kind = CONFIDENCE_KINDS.get(kind, kind) if kind else CONFIDENCE_KINDS.get(m, "–")
        note = "degenerate" if c.get("degenerate") else ""
        if c.get("degenerate"):
            bad.append(f"{m} ({fmt(c.get('levels'), 'int')} distinct value{'' if c.get('levels') == 1 else 's'})")
        rows.append(
            {
                "model": m,
                "confidence is": kind,
                "distinct values": fmt(c.get("levels"), "int"),
                "mean when right": fmt(c.get("mean_correct")),
                "mean when wrong": fmt(c.get("mean_wrong")),
                "AUC right vs wrong": fmt(c.get("auc")),
                "note": note,
            }
        )
    if bad:
        doc.p(
            f"Degenerate confidence layers: {', '.join(bad)}. A constant or two-valued layer does not rank "
            "pixels by reliability; do not use it as an uncertainty map.",
            strong=True,
        )
    doc.table(rows)


def section_areas(doc: _Doc, ctx: ReportContext) -> None:
    area_models = [m for m in ctx.order if ctx.models[m].get("area_adjusted") or ctx.models[m].get("class_areas")]
    if not area_models:
        return
    doc.h(2, "Class areas")
    doc.p(
        "Mapped area by pixel counting, and the area-adjusted estimate after Olofsson et al. (2014): the "
        "test split stratified by each map, with 95% confidence half-widths. The test pixels are "
        "labelled polygons, not a probability sample of the map, so these estimates are indicative; "
        "for figures to publish, draw a stratified random sample with `landcover assess-design`, "
        "label it, and run `landcover assess`."
    )
    for m in area_models:
        doc.h(3, m)
        aa = ctx.models[m].get("area_adjusted") or {}
        _area_table(doc, ctx.classes, aa, ctx.models[m].get("class_areas") or {})
        if aa.get("overall_accuracy") is not None:
            doc.p(
                f"Area-weighted overall accuracy: {fmt_pm(aa.get('overall_accuracy'), aa.get('overall_accuracy_ci95'))}."
            )
        for note in aa.get("notes") or []:
            doc.p(f"Note: {note}")


def _area_table(doc: _Doc, classes: list[dict], aa: dict, ca: dict) -> None:
    acls = aa.get("classes") or {}
    rows = []
    for c in classes:
        n = c["name"]
        a, px = acls.get(n) or {}, ca.get(n) or {}
        rows.append(
            {
                "class": n,
                "mapped pixels": fmt(px.get("pixels"), "int") if px else "–",
                "mapped area (ha)": fmt(px.get("area_ha", a.get("mapped_area_ha")), "ha"),
                "share of map": fmt(px.get("fraction"), "pct") if px else "–",
                "adjusted area (ha)": fmt_pm(a.get("area_ha"), a.get("area_ci95_ha"), "ha"),
                "user's accuracy": fmt_pm(a.get("users_accuracy"), a.get("users_accuracy_ci95")),
                "producer's accuracy": fmt_pm(a.get("producers_accuracy"), a.get("producers_accuracy_ci95")),
            }
        )
    doc.table(rows)


def section_footer(doc: _Doc, ctx: ReportContext) -> None:
    doc.p(
        f"Report written {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} from the files of this run directory."
    )


#: The report's sections in order. Adding a section: write ``section_x(doc, ctx)`` and list it here.
#: A section that has nothing to show adds nothing.
SECTIONS: list[Callable[[_Doc, ReportContext], None]] = [
    section_headline,
    section_run_summary,
    section_failed_models,
    section_classes,
    section_unusable_labels,
    section_split,
    section_audit,
    section_random_vs_spatial,
    section_comparison,
    section_scenes,
    section_pairwise,
    section_per_class,
    section_reference_polygons,
    section_confusion,
    section_learning_curves,
    section_maps,
    section_confidence,
    section_areas,
    section_footer,
]


def _build(run_dir: Path) -> tuple[_Doc, str]:
    ctx = ReportContext.load(run_dir)
    title = f"Land-cover model comparison: {ctx.cfg.get('name') or run_dir.name}"
    doc = _Doc(run_dir)
    doc.h(1, title)
    for section in SECTIONS:
        section(doc, ctx)
    return doc, title


def _audit_val(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return fmt(v, "int")
    if isinstance(v, float):
        return fmt(v, "sec")
    if v is None:
        return "–"
    return json.dumps(v) if isinstance(v, (dict, list)) else str(v)


def write_report(run_dir: Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` into a run directory.

    Parameters
    ----------
    run_dir : Path
        A run directory with at least ``metrics.json``; every other part
        (config, manifest, split map, maps, curves, area estimates, McNemar
        tests, random-split contrast) is shown when present and skipped when not.

    Returns
    -------
    (html_path, md_path) : tuple of Path
    """
    run_dir = Path(run_dir)
    doc, title = _build(run_dir)
    out_html, out_md = run_dir / "report.html", run_dir / "report.md"
    write_text(out_md, doc.markdown())
    write_text(out_html, doc.html(title))
    return out_html, out_md


def publish_artifacts(run_dir: Path) -> None:
    """Publish the comparison table and the report's path as Prefect artifacts.

    Only inside a Prefect flow run; anywhere else (or without Prefect installed)
    it does nothing. Prefect is imported here, not at module import.
    """
    try:
        from prefect.context import FlowRunContext
    except ImportError:
        return
    ctx = FlowRunContext.get()
    if ctx is None or getattr(ctx, "flow_run", None) is None:
        return
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    run_dir = Path(run_dir).resolve()
    metrics = _read_json(run_dir / "metrics.json") or {}
    create_table_artifact(
        table=comparison_rows(metrics),
        key="model-comparison",
        description=headline_text(metrics),
    )
    html_path, md_path = run_dir / "report.html", run_dir / "report.md"
    create_markdown_artifact(
        markdown=f"# Land-cover report\n\n- HTML: [{html_path}]({html_path.as_uri()})\n"
        f"- Markdown: [{md_path}]({md_path.as_uri()})\n- Run directory: `{run_dir}`\n",
        key="land-cover-report",
        description="Where this run's comparison report is",
    )

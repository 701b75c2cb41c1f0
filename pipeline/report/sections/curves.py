"""Learning curves of the deep models (their PNG, or a figure drawn from their JSON)."""

from __future__ import annotations

from pathlib import Path

from pipeline.report.context import ReportContext, read_json
from pipeline.report.document import Document
from pipeline.report.figures import curve_figure


def section_learning_curves(doc: Document, ctx: ReportContext) -> None:
    items: list[tuple[Path | None, str]] = []  # None: a figure that could not be drawn
    for m in ctx.order:
        png = ctx.run_dir / "curves" / f"{m}.png"
        if png.is_file():
            items.append((png, m))
            continue
        data = read_json(ctx.run_dir / "curves" / f"{m}.json")
        if isinstance(data, list) and data:
            items.append((curve_figure(m, data, ctx.figs / f"curve_{m}.png"), m))
    if items:
        doc.h(2, "Learning curves")
        doc.images(items)

"""Learning curves of the deep models, drawn from ``curves/<model>.json`` with the epoch whose
weights each model kept marked (``best_epoch`` in metrics.json); the PNG written at training time
stands in when the JSON is missing."""

from __future__ import annotations

from pathlib import Path

from pipeline.report.context import ReportContext, read_json
from pipeline.report.document import Document
from pipeline.report.figures import curve_figure


def section_learning_curves(doc: Document, ctx: ReportContext) -> None:
    items: list[tuple[Path | None, str]] = []  # None: a figure that could not be drawn
    for m in ctx.order:
        data = read_json(ctx.run_dir / "curves" / f"{m}.json")
        chosen = ctx.models[m].get("best_epoch")
        if isinstance(data, list) and data:
            caption = m if chosen is None else f"{m}: weights of epoch {chosen} kept"
            rule = (ctx.models[m].get("fit_info") or {}).get("epoch_selection")
            if chosen is not None and isinstance(rule, str) and rule:
                caption += f" ({rule})"
            figure = curve_figure(m, data, ctx.figs / f"curve_{m}.png", chosen if isinstance(chosen, int) else None)
            items.append((figure, caption))
            continue
        png = ctx.run_dir / "curves" / f"{m}.png"
        if png.is_file():
            items.append((png, m))
    if items:
        doc.h(2, "Learning curves")
        doc.images(items)

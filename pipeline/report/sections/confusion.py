"""One confusion-matrix heat map per model."""

from __future__ import annotations

from pipeline.report.context import ReportContext
from pipeline.report.document import Document
from pipeline.report.figures import confusion_figure


def section_confusion(doc: Document, ctx: ReportContext) -> None:
    if not (ctx.order and ctx.classes):
        return
    doc.h(2, "Confusion matrices")
    doc.p("Rows: reference class; columns: predicted class; cells: test pixels; colour: share of the row.")
    doc.images(
        [
            (confusion_figure(m, ctx.models[m].get("confusion_matrix") or {}, ctx.figs / f"confusion_{m}.png"), m)
            for m in ctx.order
        ]
    )

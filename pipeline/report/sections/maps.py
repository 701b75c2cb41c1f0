"""The maps (quicklooks and legend) and how well each model's confidence layer tells right from wrong."""

from __future__ import annotations

from pathlib import Path

from pipeline.report.context import ReportContext
from pipeline.report.document import Document
from pipeline.report.figures import legend_figure, quicklook
from pipeline.report.format import fmt


def section_maps(doc: Document, ctx: ReportContext) -> None:
    items: list[tuple[Path | None, str]] = []  # None: a figure that could not be drawn
    for m in ctx.order:
        png, tif = ctx.run_dir / "maps" / f"{m}.png", ctx.run_dir / "maps" / f"{m}.tif"
        if png.is_file():
            items.append((png, m))
        elif tif.is_file():
            items.append((quicklook(tif, ctx.classes, ctx.figs / f"map_{m}.png"), m))
    if items:
        doc.h(2, "Maps")
        # the legend image written beside every class map (maps/<model>_legend.png); drawn here for older runs
        beside = [p for m in ctx.order if (p := ctx.run_dir / "maps" / f"{m}_legend.png").is_file()]
        legend = beside[0] if beside else legend_figure(ctx.classes, ctx.figs / "legend.png")
        doc.images(items + [(legend, "legend")])


#: What each model's confidence layer holds (a model's ``fit_info["confidence"]`` overrides it).
CONFIDENCE_KINDS = {
    "random_forest": "share of trees voting for the class",
    "gradient_boosting": "softmax probability of the boosted scores",
    "max_likelihood": "posterior probability",
    "svm": "share of one-vs-one contests won (not a probability)",
    "ovo_vote_share": "share of one-vs-one contests won (not a probability)",
    "cnn": "softmax probability",
    "resnet": "softmax probability",
}


def section_confidence(doc: Document, ctx: ReportContext) -> None:
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

"""Accuracy per reference polygon, and the suspect polygons every model contradicts, with their
spectra against the training pixels'."""

from __future__ import annotations

from pipeline.report.context import ReportContext
from pipeline.report.document import Document
from pipeline.report.figures import spectra_figure
from pipeline.report.format import fmt, label_noun, label_where, polygon_name

#: Rows of the per-polygon table shown in the report (worst first); metrics.json keeps them all.
POLYGON_ROWS = 20


def section_reference_polygons(doc: Document, ctx: ReportContext) -> None:
    pol = ctx.metrics.get("polygons") or {}
    rows, models = pol.get("polygons") or [], pol.get("models") or []
    if not rows:
        return
    below = pol.get("contradicted_below", 0.5)
    noun = label_noun(ctx.metrics.get("labels") or {})
    region = noun == "labelled region"
    doc.h(2, f"Reference {noun}s")
    which = (
        "numbered by the pipeline, at the mean map coordinates of its test pixels: a label raster has no rows"
        if region
        else "feature: its 0-based row in the label file"
    )
    doc.p(
        f"Each test {noun} ({which}) with the share of its test pixels that each model maps as its label, "
        f"worst first. A {noun} that every model maps as its label for less than "
        f"{fmt(below, 'pct')} of its pixels is flagged: a wrong label, a change between the image and the "
        "reference date, or a class the training data does not cover is then more likely than a model error."
    )
    doc.table(
        [
            {
                noun: polygon_name(d, noun) + (label_where(d) if region else ""),
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
        doc.p(f"{len(rows) - POLYGON_ROWS} more {noun}s in metrics.json (polygons).")
    suspects = pol.get("suspects") or []
    for d in suspects:
        row: dict = next((r for r in rows if polygon_name(r) == polygon_name(d)), {})
        doc.p(_suspect_sentence(d, row, noun), strong=True)
    if suspects:
        colors = {c["name"]: c.get("color", "#808080") for c in ctx.classes}
        doc.images(
            [
                (
                    spectra_figure(suspects, colors, ctx.figs / "suspect_spectra.png", noun),
                    f"suspect {noun}s: mean spectrum against the training spectra (10-90% band)",
                )
            ]
        )


def _suspect_sentence(d: dict, row: dict, noun: str = "polygon") -> str:
    where = f" around ({row['x']:.0f}, {row['y']:.0f})" if row.get("x") is not None else ""
    name = polygon_name(d, noun)
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
            f"check the {noun} against the image."
        )
    if outside:
        return s + f", outside their 10-90% range in {', '.join(outside)}: check the {noun} against the image."
    return s + (
        ", within their 10-90% range in every band: the class is spectrally confused here rather than "
        "obviously mislabelled."
    )

"""Class areas: mapped by pixel counting and area-adjusted (Olofsson et al., 2014) with 95% intervals."""

from __future__ import annotations

from pipeline.report.context import ReportContext
from pipeline.report.document import Code, Document
from pipeline.report.format import fmt, fmt_pm


def section_areas(doc: Document, ctx: ReportContext) -> None:
    area_models = [m for m in ctx.order if ctx.models[m].get("area_adjusted") or ctx.models[m].get("class_areas")]
    if not area_models:
        return
    doc.h(2, "Class areas")
    doc.p(
        [
            "Mapped area by pixel counting, and the area-adjusted estimate after Olofsson et al. (2014): the "
            "test split stratified by each map, with 95% confidence half-widths. The test pixels are "
            "labelled polygons, not a probability sample of the map, so these estimates are indicative; "
            "for figures to publish, draw a stratified random sample with ",
            Code("landcover assess-design"),
            ", label it, and run ",
            Code("landcover assess"),
            ".",
        ]
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


def _area_table(doc: Document, classes: list[dict], aa: dict, ca: dict) -> None:
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

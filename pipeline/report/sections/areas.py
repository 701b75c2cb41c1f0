"""Class areas: mapped by pixel counting and area-adjusted (Olofsson et al., 2014) with 95%
intervals by resampling blocks (the test pixels are a clustered sample)."""

from __future__ import annotations

from typing import Any

from pipeline.report.context import ReportContext
from pipeline.report.document import Code, Document
from pipeline.report.format import fmt, fmt_ci, fmt_pm, label_noun

NOT_ESTIMABLE = "not estimable"


def section_areas(doc: Document, ctx: ReportContext) -> None:
    area_models = [m for m in ctx.order if ctx.models[m].get("area_adjusted") or ctx.models[m].get("class_areas")]
    if not area_models:
        return
    doc.h(2, "Class areas")
    noun = label_noun(ctx.metrics.get("labels") or {})
    doc.p(
        [
            "Mapped area by pixel counting, and the area-adjusted estimate after Olofsson et al. (2014): the "
            "test split stratified by each map (each test pixel's prediction stands for the map's class there). "
            f"The 95% intervals resample whole blocks, because the test pixels come in {noun}s and blocks, "
            "not one by one; the formula's half-widths, which treat every test pixel as independent and are "
            f"far narrower, are in metrics.json (pixel level). The test pixels are labelled {noun}s, not a "
            "probability sample of the map (Stehman and Foody 2019), so even these intervals are indicative; "
            "for figures to publish, draw a stratified random sample with ",
            Code("landcover assess-design"),
            ", label it, and run ",
            Code("landcover assess"),
            ". A class without test pixels has no estimate (not estimable), whatever area the map gives it.",
        ]
    )
    _comparison_table(doc, ctx, area_models)
    doc.p("Per model, with the user's and producer's accuracies the adjustment uses:")
    for m in area_models:
        doc.h(3, m)
        aa = ctx.models[m].get("area_adjusted") or {}
        _area_table(doc, ctx.classes, aa, ctx.models[m].get("class_areas") or {})
        used = (ctx.models[m].get("area_map") or {}).get("map")
        if used:
            doc.p(f"Map used for these areas: the {used}.")
        mmu = ctx.models[m].get("class_areas_mmu")
        if mmu:
            doc.p(
                f"After the minimum mapping unit ({mmu.get('mmu')}), the map delivered as {', '.join(mmu['paths'])} "
                "has these mapped areas (pixel counting; the adjusted estimates above stay those of the raw map, "
                "whose errors the test pixels measure):"
            )
            doc.table(
                [
                    {
                        "class": c["name"],
                        "mapped area after MMU (ha)": fmt((mmu["classes"].get(c["name"]) or {}).get("area_ha"), "ha"),
                        "share of map": fmt((mmu["classes"].get(c["name"]) or {}).get("fraction"), "pct"),
                    }
                    for c in ctx.classes
                ]
            )
        if aa.get("overall_accuracy") is not None:
            units = aa.get("ci95_units") or {}
            if units:
                ci = f"95% CI {fmt_ci(units.get('overall_accuracy'))} over {fmt(units.get('n_units'), 'int')} blocks"
                doc.p(f"Area-weighted overall accuracy: {fmt(aa.get('overall_accuracy'))} ({ci}).")
            else:  # a run from before the block intervals
                pm = fmt_pm(aa.get("overall_accuracy"), aa.get("overall_accuracy_ci95"))
                doc.p(f"Area-weighted overall accuracy: {pm} (pixel-level half-width).")
        for note in aa.get("notes") or []:
            doc.p(f"Note: {note}")


def _comparison_table(doc: Document, ctx: ReportContext, area_models: list[str]) -> None:
    """One table for all models, class by class (models in ranking order): what each map says
    (pixel counting) beside what the test pixels say it should be (adjusted, 95% CI over blocks),
    so that a class whose area depends on the model chosen shows up in one place."""
    rows = []
    for c in ctx.classes:
        n = c["name"]
        for m in area_models:
            info = ctx.models[m]
            px = (info.get("class_areas") or {}).get(n) or {}
            aa = info.get("area_adjusted") or {}
            a = (aa.get("classes") or {}).get(n) or {}
            units = (aa.get("ci95_units") or {}).get("classes")
            if not a:
                adjusted = "–"
            elif a.get("area_ha") is None:
                adjusted = NOT_ESTIMABLE
            elif units is not None:
                adjusted = _with_ci(a.get("area_ha"), (units.get(n) or {}).get("area_ha"), "ha")
            else:  # a run from before the block intervals
                adjusted = fmt_pm(a.get("area_ha"), a.get("area_ci95_ha"), "ha") + " (pixel-level)"
            rows.append(
                {
                    "class": n,
                    "model": m,
                    "mapped area (ha)": fmt(px.get("area_ha", a.get("mapped_area_ha")), "ha"),
                    "adjusted area (ha) [95% CI]": adjusted,
                }
            )
    doc.table(rows)


def _with_ci(v: Any, ci: Any, kind: str = "acc") -> str:
    return "–" if v is None else f"{fmt(v, kind)} {fmt_ci(ci, kind)}"


def _area_table(doc: Document, classes: list[dict], aa: dict, ca: dict) -> None:
    acls = aa.get("classes") or {}
    units = (aa.get("ci95_units") or {}).get("classes")
    rows = []
    for c in classes:
        n = c["name"]
        a, px = acls.get(n) or {}, ca.get(n) or {}
        row = {
            "class": n,
            "mapped pixels": fmt(px.get("pixels"), "int") if px else "–",
            "mapped area (ha)": fmt(px.get("area_ha", a.get("mapped_area_ha")), "ha"),
            "share of map": fmt(px.get("fraction"), "pct") if px else "–",
        }
        if units is not None:
            u = units.get(n) or {}
            row["adjusted area (ha) [95% CI]"] = (
                NOT_ESTIMABLE if a and a.get("area_ha") is None else _with_ci(a.get("area_ha"), u.get("area_ha"), "ha")
            )
            row["user's accuracy [95% CI]"] = _with_ci(a.get("users_accuracy"), u.get("users_accuracy"))
            row["producer's accuracy [95% CI]"] = (
                NOT_ESTIMABLE
                if a and a.get("area_ha") is None
                else _with_ci(a.get("producers_accuracy"), u.get("producers_accuracy"))
            )
        else:  # a run from before the block intervals: pixel-level half-widths, labelled so
            row["adjusted area (ha) ± pixel-level"] = fmt_pm(a.get("area_ha"), a.get("area_ci95_ha"), "ha")
            row["user's accuracy ± pixel-level"] = fmt_pm(a.get("users_accuracy"), a.get("users_accuracy_ci95"))
            row["producer's accuracy ± pixel-level"] = fmt_pm(
                a.get("producers_accuracy"), a.get("producers_accuracy_ci95")
            )
        rows.append(row)
    doc.table(rows)

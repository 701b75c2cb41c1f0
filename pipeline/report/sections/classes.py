"""The data: the classes with their labelled and sampled pixels, and the labels, classes and bands
that could not be used."""

from __future__ import annotations

from pipeline.report.context import ReportContext
from pipeline.report.document import Document
from pipeline.report.format import fmt


def section_classes(doc: Document, ctx: ReportContext) -> None:
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
    _inputs_note(doc, ctx.metrics.get("labels") or {})
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


def _inputs_note(doc: Document, lab: dict) -> None:
    """How the image's files were put on one grid, and where a table's points came from."""
    from pathlib import Path

    from pipeline.core.text import short_list

    al = lab.get("alignment") or {}
    warped = al.get("warped") or {}
    if warped:
        res = al.get("res") or [0, 0]
        rules = {"finest": "the finest band's grid", "align_to": "the grid of rasters.align_to"}
        rule = rules.get(str(al.get("rule")), "the grid")
        doc.p(
            f"Image: {len(warped)} file(s) on other grids ("
            + short_list(f"{Path(p).name} {r[0]:g} x {r[1]:g}" for p, r in warped.items())
            + f") were warped onto {rule}, {Path(str(al.get('reference'))).name} ({fmt(res[0], 'len')} x "
            f"{fmt(res[1], 'len')}, {al.get('crs')}), nearest neighbour; the models record it and map new files "
            "the same way."
        )
    co = lab.get("coordinates") or {}
    if co:
        doc.p(
            f"Labels: one point per row of the table, from columns {co.get('x')} and {co.get('y')} in {co.get('crs')}."
        )


def section_unusable_labels(doc: Document, ctx: ReportContext) -> None:
    """Labels that could not be used, per class and reason; classes and bands left out."""
    lab = ctx.metrics.get("labels") or {}
    per = lab.get("features_per_class") or {}
    reasons = {
        "outside_raster": "outside the raster",
        "no_pixel": "covering no pixel centre",
        "on_nodata": "only on nodata",
        "no_geometry": "no geometry",
        "invalid_geometry": "invalid geometry",
    }
    nod_px = lab.get("pixels_under_nodata_per_class") or {}
    repaired = {c: r.get("repaired") for c, r in per.items() if r.get("repaired")}
    bad = any(r.get(k) for r in per.values() for k in reasons) or any(nod_px.values()) or bool(repaired)
    empty = lab.get("classes_without_labels") or {}
    unknown = lab.get("unknown_labels") or {}
    dropped_bands = lab.get("dropped_bands") or {}
    by_model = {m: d for m, r in ctx.models.items() if (d := r.get("dropped_classes"))}
    outside_px = lab.get("label_pixels_outside_raster") or {}
    background = lab.get("background_pixels") or 0
    if not (bad or empty or unknown or dropped_bands or by_model or outside_px or background):
        return
    doc.h(3, "Labels and bands that could not be used")
    if per and bad:
        # the reasons a run counted (an older run's labels.json has fewer)
        shown = {k: v for k, v in reasons.items() if any(k in r for r in per.values())}
        doc.p(
            f"{lab.get('features_used', '?')} of {lab.get('features_read', '?')} label features were used. "
            "A feature is unusable when it lies outside the raster, covers no pixel centre, or only covers "
            "pixels where some band has no data"
            + (
                "; or when it has no geometry (empty, or no coordinates) or an invalid one that make_valid "
                "cannot repair (a polygon collapsed to a line, coordinates out of range)"
                if "no_geometry" in shown
                else ""
            )
            + "."
            + (
                f" Invalid geometries repaired with make_valid and used: {sum(repaired.values())} "
                f"({', '.join(f'{c} {n}' for c, n in repaired.items())})."
                if repaired
                else ""
            )
        )
        doc.table(
            [
                {
                    "class": c,
                    "features": fmt(r.get("read"), "int"),
                    "used": fmt(r.get("used"), "int"),
                    **{v: fmt(r.get(k), "int") for k, v in shown.items()},
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
    if background:
        doc.p(
            f"The label raster declares no nodata and {lab.get('background_value')} is no class: its "
            f"{fmt(background, 'int')} pixels of value {lab.get('background_value')} were taken as unlabelled "
            "background."
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

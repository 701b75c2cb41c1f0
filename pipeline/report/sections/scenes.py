"""Multi-scene runs: each model's accuracy per scene and the first-ranked model's map of each scene."""

from __future__ import annotations

from pipeline.report.context import ReportContext
from pipeline.report.document import Document
from pipeline.report.figures import legend_figure, quicklook
from pipeline.report.format import fmt

MAX_SCENE_QUICKLOOKS = 24  # scene maps drawn in the report (of the best model); the rest are listed in metrics.json


def section_scenes(doc: Document, ctx: ReportContext) -> None:
    """Per-scene accuracy of every model and the best model's map of each scene (multi-scene runs)."""
    scenes = ctx.metrics.get("scenes") or {}
    if not scenes:
        return
    doc.h(2, "Scenes")
    across = ctx.split.get("audit_across_scenes") or {}
    zones = across.get("crs_zones")
    doc.p(
        f"{len(scenes)} scenes; the figures above pool the test pixels of all of them. Below, each model's "
        "accuracy on the test pixels of each scene alone (– where a scene has no test pixel), beside the "
        "no-skill baseline's (the majority class of the training pixels everywhere). Scenes that "
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
        if "baselines" in sc:  # the same test pixels, mapped by a constant (majority-class) map
            row["no-skill OA"] = fmt(((sc.get("baselines") or {}).get("majority") or {}).get("overall_accuracy"))
        rows.append(row)
    doc.table(rows)
    if not ctx.order:
        return
    best = ctx.order[0]
    items = []
    for name, sc in list(scenes.items())[:MAX_SCENE_QUICKLOOKS]:
        tif = ctx.run_dir / ((sc.get("maps") or {}).get(best) or f"maps/{name}/{best}.tif")
        if tif.is_file():
            items.append((quicklook(tif, ctx.classes, ctx.figs / f"map_{name}_{best}.png"), f"{name} ({best})"))
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
        doc.images(items + [(legend_figure(ctx.classes, ctx.figs / "legend.png"), "legend")])

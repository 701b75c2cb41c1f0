"""Per-class user's and producer's accuracy and F1 of every model, with the classes to look at."""

from __future__ import annotations

from typing import Any

from pipeline.report.context import ReportContext
from pipeline.report.document import Document
from pipeline.report.format import fmt, label_noun

#: Per-class metrics of metrics.json and the headings of their report tables.
PER_CLASS_METRICS = {"precision": "User's accuracy (precision)", "recall": "Producer's accuracy (recall)", "f1": "F1"}


def class_flags(ctx: ReportContext) -> dict[str, str]:
    """Classes an analyst must look at: not assessable (left out of the ranking), no test pixels,
    or no test pixel classified right by any model."""
    na = (ctx.metrics.get("evidence") or {}).get("not_assessable") or {}
    flags = {}
    for c in ctx.classes:
        support = [ctx.per_class(m, c["name"]).get("support") for m in ctx.order]
        recall = [ctx.per_class(m, c["name"]).get("recall") for m in ctx.order]
        if c["name"] in na:
            flags[c["name"]] = f"not assessable: {na[c['name']]}"
        elif not any(support):
            flags[c["name"]] = "no test pixels"
        elif all(r is not None and r == 0 for r in recall):
            flags[c["name"]] = "no model gets a test pixel right"
    return flags


def section_per_class(doc: Document, ctx: ReportContext) -> None:
    if not (ctx.order and ctx.classes):
        return
    doc.h(2, "Per-class accuracy")
    noun = label_noun(ctx.metrics.get("labels") or {})
    doc.p(
        "Test split, per pixel. User's accuracy (precision): of the pixels mapped as the class, the share that "
        "is the class; producer's accuracy (recall): of the class's test pixels, the share mapped as it. "
        '"–" is undefined: precision of a class the model never predicts, recall and F1 of a class with no '
        f"test pixels. A class tested on fewer than 2 {noun}s or blocks is not assessable: its figures describe "
        f"those {noun}s, not the class, and it is left out of the ranking."
    )
    flags = class_flags(ctx)
    tested = ((ctx.metrics.get("evidence") or {}).get("test_set") or {}).get("per_class") or {}
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
                if tested:  # (runs from before the evidence record have no polygon counts)
                    row[f"test {noun}s"] = fmt((tested.get(c["name"]) or {}).get("polygons"), "int")
            row.update({m: fmt(ctx.per_class(m, c["name"]).get(key)) for m in ctx.order})
            if i == 0 and flags:
                row["flag"] = flags.get(c["name"], "")
            rows.append(row)
        doc.table(rows)

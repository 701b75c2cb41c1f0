"""One error matrix per model, as a table an analyst can print: test pixels by reference class
(rows) and mapped class (columns), with row and column totals, producer's accuracy (recall) in the
last column and user's accuracy (precision) in the last row. Counts are test pixels; the
accuracies are pixel shares of the pooled test set, whose intervals (over groups) are in the
comparison and per-class sections."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.report.context import ReportContext
from pipeline.report.document import Document
from pipeline.report.format import fmt, label_noun

TOTAL, PRODUCERS, USERS = "total", "producer's accuracy", "user's accuracy"


def error_matrix_rows(cm: dict[str, Any]) -> list[dict[str, str]]:
    """``metrics.json``'s ``confusion_matrix`` (``labels``, ``matrix``: rows reference, columns
    predicted) as table rows with totals and accuracy margins; ``[]`` when it is missing or not square.
    An accuracy with no pixels to divide by (a class never mapped, or never in the test set) is "–"."""
    labels = list(cm.get("labels") or [])
    mat = np.asarray(cm.get("matrix") or [], dtype=np.int64)
    if not labels or mat.shape != (len(labels), len(labels)):
        return []
    row_tot, col_tot, n = mat.sum(axis=1), mat.sum(axis=0), int(mat.sum())
    rows = []
    for i, name in enumerate(labels):
        row = {"reference \\ mapped": name}
        row.update({lab: fmt(int(mat[i, j]), "int") for j, lab in enumerate(labels)})
        row[TOTAL] = fmt(int(row_tot[i]), "int")
        row[PRODUCERS] = fmt(mat[i, i] / row_tot[i], "pct") if row_tot[i] else "–"
        rows.append(row)
    totals = {"reference \\ mapped": TOTAL, **{lab: fmt(int(col_tot[j]), "int") for j, lab in enumerate(labels)}}
    totals[TOTAL] = fmt(n, "int")
    totals[PRODUCERS] = ""
    users = {"reference \\ mapped": USERS}
    users.update({lab: fmt(mat[j, j] / col_tot[j], "pct") if col_tot[j] else "–" for j, lab in enumerate(labels)})
    users[TOTAL] = ""
    users[PRODUCERS] = ""
    return [*rows, totals, users]


def section_confusion(doc: Document, ctx: ReportContext) -> None:
    matrices = [(m, error_matrix_rows(ctx.models[m].get("confusion_matrix") or {})) for m in ctx.order]
    matrices = [(m, rows) for m, rows in matrices if rows]
    if not matrices:
        return
    doc.h(2, "Error matrices")
    noun = label_noun(ctx.metrics.get("labels") or {})
    doc.p(
        "Rows: reference class; columns: mapped class; cells: test pixels. The last column is each "
        "class's producer's accuracy (recall), the last row each class's user's accuracy (precision): "
        f"pixel shares of the test set, without intervals (those, over {noun}s or blocks, are in the "
        "tables above)."
    )
    for m, rows in matrices:
        doc.h(3, m)
        doc.table(rows)
        mat = np.asarray(ctx.models[m]["confusion_matrix"]["matrix"], dtype=np.int64)
        if mat.sum():
            doc.p(
                f"Overall accuracy {fmt(np.trace(mat) / mat.sum(), 'pct')} of {fmt(int(mat.sum()), 'int')} test pixels."
            )

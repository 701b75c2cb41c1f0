"""The model comparison table (95% intervals, best model highlighted unless the evaluation is
inconclusive) and the pairwise McNemar tests."""

from __future__ import annotations

from pipeline.report.context import ReportContext
from pipeline.report.document import Document
from pipeline.report.format import fmt
from pipeline.report.ranking import SIGNIFICANCE, comparison_rows

#: Report headers of the :func:`comparison_rows` keys (the Prefect artifact keeps the keys).
COMPARISON_HEADERS = {
    "model": "model",
    "overall_accuracy": "overall accuracy",
    "overall_accuracy_ci95": "OA 95% CI",
    "kappa": "kappa",
    "kappa_ci95": "kappa 95% CI",
    "macro_f1": "macro-F1",
    "macro_f1_ci95": "macro-F1 95% CI",
    "fit_seconds": "fit (s)",
    "predict_mpx_per_s": "mapping (Mpx/s)",
    "epochs": "epochs",
}


def section_comparison(doc: Document, ctx: ReportContext) -> None:
    doc.h(2, "Model comparison")
    ev = ctx.metrics.get("evidence") or {}
    weak = ev.get("conclusive") is False
    rows = [{COMPARISON_HEADERS.get(k, k): v for k, v in r.items()} for r in comparison_rows(ctx.metrics)]
    if weak:
        ts = ev.get("test_set") or {}
        doc.p(
            f"Test split of {fmt(ts.get('pixels'), 'int')} pixels from {fmt(ts.get('blocks'), 'int')} "
            f"block(s) and {fmt(ts.get('polygons'), 'int')} polygon(s): the evaluation is inconclusive "
            f"({'; '.join(ev.get('reasons') or [])}). Intervals marked † come from a handful of pixels or "
            "places and are not reliable ranges; the order of the rows is not a ranking.",
            strong=True,
        )
        for r in rows:
            for k in r:
                if "CI" in k and r[k] not in ("–", ""):
                    r[k] = f"{r[k]} †"
    else:
        doc.p(
            "Test split; 95% confidence intervals from a bootstrap over spatial blocks. Ranked by overall "
            "accuracy; the best model is highlighted."
        )
    doc.table(rows, highlight={0} if rows and not weak else set(), headers=list(COMPARISON_HEADERS.values()))


def section_pairwise(doc: Document, ctx: ReportContext) -> None:
    if not ctx.pairwise:
        return
    doc.h(3, "Pairwise McNemar tests")
    doc.table(
        [
            {
                "model A": d.get("a", "?"),
                "model B": d.get("b", "?"),
                "statistic": fmt(d.get("statistic")),
                "p-value": fmt(d.get("p_value"), "p"),
                "significant at 0.05": "–"
                if d.get("p_value") is None
                else ("yes" if d["p_value"] < SIGNIFICANCE else "no"),
            }
            for d in ctx.pairwise
        ]
    )

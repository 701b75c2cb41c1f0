"""The model comparison table (scores on the assessable classes with 95% intervals over blocks,
the gain over a no-skill map, the no-skill baselines; the leading models highlighted unless the
evaluation is inconclusive) and the paired tests between models."""

from __future__ import annotations

from pipeline.report.context import ReportContext
from pipeline.report.document import Document
from pipeline.report.format import fmt, fmt_ci, label_noun
from pipeline.report.ranking import SIGNIFICANCE, comparison_rows, leaders, majority_label

#: Report columns: header -> (the :func:`comparison_rows` key, the key of its interval or None).
#: A figure and its interval share a cell, so that a six-model table fits the page.
COMPARISON_COLUMNS: dict[str, tuple[str, str | None]] = {
    "model": ("model", None),
    "overall accuracy [95% CI]": ("overall_accuracy", "overall_accuracy_ci95"),
    "kappa [95% CI]": ("kappa", "kappa_ci95"),
    "macro-F1 [95% CI]": ("macro_f1", "macro_f1_ci95"),
    "fit (s)": ("fit_seconds", None),
    "mapping (Mpx/s)": ("predict_mpx_per_s", None),
    "epochs": ("epochs", None),
}


def _cells(row: dict[str, str], dagger: bool) -> dict[str, str]:
    """One :func:`comparison_rows` row as report cells; ``dagger`` marks every interval."""
    out = {}
    for header, (key, ci_key) in COMPARISON_COLUMNS.items():
        v = row.get(key, "–")
        ci = row.get(ci_key, "–") if ci_key else None
        if ci not in (None, "–", ""):
            v = f"{v} {ci}"
        if dagger and "[" in v:
            v = f"{v} †"
        out[header] = v
    return out


def _conventions(ctx: ReportContext) -> str:
    """What the table's figures are computed on: the ranking classes, the units, macro-F1."""
    stats = ctx.metrics.get("statistics") or {}
    ev = ctx.metrics.get("evidence") or {}
    na = ev.get("not_assessable") or {}
    rk = (ev.get("test_set") or {}).get("ranking") or {}
    noun = label_noun(ctx.metrics.get("labels") or {})
    ranked = stats.get("ranking_classes") or rk.get("classes") or []
    out = []
    if na and not ranked:
        out.append(
            "No class is assessable ("
            + "; ".join(f"{k}: {v}" for k, v in na.items())
            + "), so no score is computed: the table has no figures to rank on. Each model's scores over all "
            "test pixels are in metrics.json."
        )
    elif na:
        out.append(
            "Scores over the assessable classes ("
            + ", ".join(ranked)
            + "). Not assessable, so left out: "
            + "; ".join(f"{k} ({v})" for k, v in na.items())
            + ": their test pixels do not count, predictions into them still count as errors. Each model's "
            "scores over all test pixels are in metrics.json."
        )
    if stats:
        units = (
            f" ({fmt(rk.get('blocks'), 'int')} blocks, {fmt(rk.get('polygons'), 'int')} {noun}s)."
            if rk and rk.get("pixels")
            else "."
        )
        fitted = "each fold's training pixels" if ctx.split.get("strategy") == "kfold" else "the training pixels"
        out.append(
            f"Intervals: {stats.get('interval', '95% bootstrap over spatial blocks')}"
            + units
            + f" Macro-F1: {stats.get('macro_f1')}. The no-skill rows score maps that ignore the image "
            f"(a constant map of the {majority_label(ctx.metrics)}; classes drawn at random with the training "
            f"frequencies), fitted on {fitted} like the models."
        )
    else:  # a run from before the ranking and baselines existed
        out.append("Test split; 95% confidence intervals from a bootstrap over spatial blocks.")
    return " ".join(out)


def section_comparison(doc: Document, ctx: ReportContext) -> None:
    doc.h(2, "Model comparison")
    ev = ctx.metrics.get("evidence") or {}
    weak = ev.get("conclusive") is False
    rows = [_cells(r, dagger=weak) for r in comparison_rows(ctx.metrics)]
    highlight: set[int] = set()
    if weak:
        ts = ev.get("test_set") or {}
        doc.p(
            f"Test split of {fmt(ts.get('pixels'), 'int')} pixels from {fmt(ts.get('blocks'), 'int')} "
            f"block(s) and {fmt(ts.get('polygons'), 'int')} {label_noun(ctx.metrics.get('labels') or {})}(s): "
            "the evaluation is inconclusive "
            f"({'; '.join(ev.get('reasons') or [])}). Intervals marked † come from a handful of pixels or "
            "places and are not reliable ranges; the order of the rows is not a ranking.",
            strong=True,
        )
    else:
        lead = leaders(ctx.models, ctx.pairwise)
        highlight = {i for i, m in enumerate(ctx.order) if m in lead}
        who = (
            "the best model is highlighted"
            if len(lead) == 1
            else "highlighted: the best model and those the paired test cannot tell apart from it"
        )
        doc.p(f"Ranked by overall accuracy; {who}.")
    doc.p(_conventions(ctx))
    doc.table(rows, highlight=highlight, headers=list(COMPARISON_COLUMNS))


def section_pairwise(doc: Document, ctx: ReportContext) -> None:
    if not ctx.pairwise:
        return
    if "test" not in ctx.pairwise[0]:  # a run from before the group-level tests
        doc.h(3, "Pairwise McNemar tests (pixel level)")
        doc.p(
            "These tests treat test pixels as independent, which pixels of one "
            f"{label_noun(ctx.metrics.get('labels') or {})} are not: too confident."
        )
        doc.table(
            [
                {
                    "model A": d.get("a", "?"),
                    "model B": d.get("b", "?"),
                    "p-value": fmt(d.get("p_value"), "p"),
                }
                for d in ctx.pairwise
            ]
        )
        return
    stats = ctx.metrics.get("statistics") or {}
    weak = (ctx.metrics.get("evidence") or {}).get("conclusive") is False
    doc.h(3, "Pairwise comparisons")
    if weak:  # no figure more confident than the headline, which names no best model
        doc.p(
            "The evaluation is inconclusive (see the headline): the tests below rest on too little independent "
            "test data, so neither a significant nor a non-significant difference (marked †) is a finding.",
            strong=True,
        )
    doc.p(
        f"Every two models on the same test pixels: {stats.get('pairwise_test', 'paired block bootstrap')}. "
        f"p-values adjusted by {stats.get('correction', 'Holm (1979)')}; a difference is significant when its "
        f"adjusted p-value is below {fmt(SIGNIFICANCE, 'p')}. Differences are A − B."
    )

    def cell(d: dict, key: str) -> tuple[str, str, str]:
        x = d.get(key) or {}
        diff = x.get("difference")
        return ("–" if diff is None else f"{diff:+.3f}", fmt_ci(x.get("ci95")), fmt(x.get("p_holm"), "p"))

    rows: list[dict[str, str]] = []
    for d in ctx.pairwise:
        oa, f1 = cell(d, "overall_accuracy"), cell(d, "macro_f1")
        rows.append(
            {
                "model A": d.get("a", "?"),
                "model B": d.get("b", "?"),
                "OA difference": oa[0],
                "OA 95% CI": oa[1],
                "OA p (Holm)": oa[2],
                "macro-F1 difference": f1[0],
                "macro-F1 95% CI": f1[1],
                "macro-F1 p (Holm)": f1[2],
                "OA significant": "–"
                if d.get("p_value") is None
                else ("yes" if d.get("significant") else "no") + (" †" if weak else ""),
            }
        )
    doc.table(rows)
    _vs_baselines(doc, ctx)


def _vs_baselines(doc: Document, ctx: ReportContext) -> None:
    """Each model against each no-skill baseline: the paired OA gain, its interval and Holm p."""
    weak = (ctx.metrics.get("evidence") or {}).get("conclusive") is False
    rows = []
    for m in ctx.order:
        for b, d in (ctx.models[m].get("vs_baselines") or {}).items():
            diff = d.get("difference")
            rows.append(
                {
                    "model": m,
                    "no-skill baseline": majority_label(ctx.metrics, short=True) if b == "majority" else b,
                    "OA gain": "–" if diff is None else f"{diff:+.3f}",
                    "95% CI": fmt_ci(d.get("ci95")),
                    "p (Holm)": fmt(d.get("p_holm"), "p"),
                    "beats it": "–"
                    if d.get("beats") is None
                    else ("significantly" if d.get("significantly_better") else "yes" if d["beats"] else "no")
                    + (" †" if weak else ""),
                }
            )
    if rows:
        doc.p(
            "Each model against the no-skill baselines on the same test pixels (the same paired block bootstrap; "
            "Holm-adjusted across the models): a model that does not beat a map that ignores the image has "
            "no demonstrated skill."
        )
        doc.table(rows)

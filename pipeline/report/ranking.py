"""Models ranked best first, the comparison table's rows and the sentences that say which model
is best and whether its lead is significant (McNemar tests of ``metrics.json``)."""

from __future__ import annotations

from pipeline.report.format import fmt, fmt_ci

#: p-value of a McNemar test below which a difference between two models is called significant.
SIGNIFICANCE = 0.05


def rank_models(models: dict[str, dict]) -> list[str]:
    """Model names by overall accuracy (then kappa), best first; missing values last."""

    def key(m: str) -> tuple:
        r = models[m]
        oa, ka = r.get("overall_accuracy"), r.get("kappa")
        return (-(oa if oa is not None else -1.0), -(ka if ka is not None else -2.0))

    return sorted(models, key=key)


def _pair(pairwise: list[dict], a: str, b: str) -> dict | None:
    for d in pairwise or []:
        if {d.get("a"), d.get("b")} == {a, b}:
            return d
    return None


def significance_sentence(models: dict[str, dict], pairwise: list[dict]) -> str:
    """One sentence: which model is best and whether its lead over the runner-up is significant."""
    order = rank_models(models)
    if not order:
        return "No model was evaluated."
    best = order[0]
    oa = models[best].get("overall_accuracy")
    s = f"Best model: {best} (overall accuracy {fmt(oa)})."
    if len(order) == 1:
        return s + " It is the only model in this run."
    second = order[1]
    s += f" Runner-up: {second} ({fmt(models[second].get('overall_accuracy'))})."
    d = _pair(pairwise, best, second)
    if d is None or d.get("p_value") is None:
        return s + " No McNemar test between the two is recorded, so the significance of the lead is unknown."
    p = d["p_value"]
    if p < SIGNIFICANCE:
        return s + f" The lead is statistically significant (McNemar test on the same test pixels, p {_p_text(p)})."
    return s + (
        f" The lead is not statistically significant (McNemar test on the same test pixels, p {_p_text(p)}):"
        " on this test set the two cannot be told apart."
    )


def _p_text(p: float) -> str:
    t = fmt(p, "p")
    return t if t.startswith("<") else f"= {t}"


def comparison_rows(metrics: dict) -> list[dict[str, str]]:
    """The side-by-side model table as formatted strings, best model first (also the Prefect artifact)."""
    models = metrics.get("models") or {}
    rows = []
    for m in rank_models(models):
        r = models[m]
        ci = r.get("ci95") or {}
        rows.append(
            {
                "model": m,
                "overall_accuracy": fmt(r.get("overall_accuracy")),
                "overall_accuracy_ci95": fmt_ci(ci.get("overall_accuracy")),
                "kappa": fmt(r.get("kappa")),
                "kappa_ci95": fmt_ci(ci.get("kappa")),
                "macro_f1": fmt(r.get("macro_f1")),
                "macro_f1_ci95": fmt_ci(ci.get("macro_f1")),
                "fit_seconds": fmt(r.get("fit_seconds"), "sec"),
                "predict_mpx_per_s": fmt(r.get("predict_mpx_per_s"), "speed"),
                "epochs": "–"
                if r.get("epochs_run") is None
                else f"{r['epochs_run']}" + ("" if r.get("best_epoch") is None else f" (best {r['best_epoch']})"),
            }
        )
    return rows


def headline_text(metrics: dict) -> str:
    """The report's headline: leakage warning, then the inconclusive verdict or the best model
    (:func:`pipeline.evaluation.evidence.headline` over ``metrics.json["evidence"]``)."""
    from pipeline.evaluation.evidence import headline

    text = headline(
        metrics.get("evidence"), significance_sentence(metrics.get("models") or {}, metrics.get("pairwise") or [])
    )
    failed = metrics.get("failed_models") or {}
    if failed:
        text += f" {len(failed)} model(s) failed: {', '.join(failed)} (see Failed models)."
    return text

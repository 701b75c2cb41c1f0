"""Models ranked best first, the comparison table's rows and the sentences that say which model
is best, whether its lead holds on group-level evidence (the paired block-bootstrap tests of
``metrics.json["pairwise"]``, Holm-adjusted) and which models do not beat a no-skill map."""

from __future__ import annotations

from typing import Any

from pipeline.report.format import fmt, fmt_ci, label_noun

#: Holm-adjusted p-value below which a difference between two models is called significant.
SIGNIFICANCE = 0.05


def ranked_scores(r: dict) -> dict:
    """The figures a model is ranked on: those of the assessable classes (``"ranking"``), or for
    a run from before the ranking existed, the model's own."""
    return r.get("ranking") or r


def rank_models(models: dict[str, dict]) -> list[str]:
    """Model names by overall accuracy on the assessable classes (then kappa), best first;
    missing values last."""

    def key(m: str) -> tuple:
        r = ranked_scores(models[m])
        oa, ka = r.get("overall_accuracy"), r.get("kappa")
        return (-(oa if oa is not None else -1.0), -(ka if ka is not None else -2.0))

    return sorted(models, key=key)


def _pair(pairwise: list[dict], a: str, b: str) -> dict | None:
    for d in pairwise or []:
        if {d.get("a"), d.get("b")} == {a, b}:
            return d
    return None


def _p_text(p: float) -> str:
    t = fmt(p, "p")
    return t if t.startswith("<") else f"= {t}"


def leaders(models: dict[str, dict], pairwise: list[dict]) -> list[str]:
    """The best model and every model whose difference from it the paired test does not find
    significant (Holm-adjusted): the models this test set cannot tell apart from the best."""
    order = rank_models(models)
    if not order:
        return []
    out = [order[0]]
    for m in order[1:]:
        d = _pair(pairwise, order[0], m)
        if d is None or d.get("p_value") is None or d["p_value"] >= SIGNIFICANCE:
            out.append(m)
    return out


def significance_sentence(models: dict[str, dict], pairwise: list[dict]) -> str:
    """Which model is best, and whether its lead over the runner-up holds (paired test over
    blocks, Holm-adjusted); when it does not, the leaders that cannot be told apart."""
    order = rank_models(models)
    if not order:
        return "No model was evaluated."
    best, r = order[0], ranked_scores(models[order[0]])
    ci = (r.get("ci95") or {}).get("overall_accuracy")
    s = f"Best model: {best} (overall accuracy {fmt(r.get('overall_accuracy'))}"
    s += f", 95% CI {fmt_ci(ci)})" if ci and ci[0] is not None else ")"
    if len(order) == 1:
        return s + ". It is the only model in this run."
    second = order[1]
    oa2 = fmt(ranked_scores(models[second]).get("overall_accuracy"))
    d = _pair(pairwise, best, second)
    if d is None or d.get("p_value") is None:
        return (
            s
            + f". Runner-up: {second} ({oa2}). No test between the two is recorded, so whether the lead holds is unknown."
        )
    if "test" not in d:  # a run from before the group-level tests: its McNemar test treats pixels as independent
        how = f"pixel-level McNemar test, which treats pixels as independent, p {_p_text(d['p_value'])}"
        sig = "significant" if d["p_value"] < SIGNIFICANCE else "not significant"
        return s + f". Runner-up: {second} ({oa2}); the lead is {sig} by a {how}."
    how = f"{d['test']} over {fmt(d.get('n_units'), 'int')} blocks, Holm-adjusted p {_p_text(d['p_value'])}"
    if d["p_value"] < SIGNIFICANCE:
        return s + f". Its lead over the runner-up {second} ({oa2}) is significant ({how})."
    lead = leaders(models, pairwise)[1:]
    return s + (
        f", but its lead over the runner-up {second} ({oa2}) is not significant ({how}): "
        f"on this test set {best} cannot be told apart from {', '.join(lead)}."
    )


def majority_label(metrics: dict, short: bool = False) -> str:
    """How the majority-class baseline is named: its class when every fold's is the same
    (``short``: for a table row)."""
    per_fold = ((metrics.get("baselines") or {}).get("majority") or {}).get("classes_per_fold") or []
    word = "majority" if short else "majority class"
    if per_fold and len(set(per_fold)) == 1:
        return f"{word} ({per_fold[0]})"
    return f"{word} of each fold" + ("" if short else "'s training pixels") if per_fold else word


def no_skill_sentence(metrics: dict) -> str:
    """Models that do not beat a no-skill baseline on the ranking figures ("" when all do).

    When the evaluation is inconclusive (too little test data), the comparison is no finding
    either way, and with no assessable class there is nothing to compare on: the sentence says
    so instead of stating a test result."""
    base = metrics.get("baselines") or {}
    models = metrics.get("models") or {}
    ev = metrics.get("evidence") or {}
    if models and base and ev.get("conclusive") is False:
        rk = (ev.get("test_set") or {}).get("ranking") or {}
        if not (rk.get("classes") if rk else ev.get("assessable_classes")):
            return "No comparison with a no-skill baseline could be made: no class is assessable."
        return (
            "Whether the models beat a no-skill baseline cannot be told: the test data are too few "
            "for the comparison (see the reasons above)."
        )
    below: list[str] = []
    unproven: list[str] = []
    for m in rank_models(models):
        vs = models[m].get("vs_baselines") or {}
        if any(v.get("beats") is False for v in vs.values()):
            below.append(m)
        elif vs and not all(v.get("significantly_better") for v in vs.values()):
            unproven.append(m)
    if not (below or unproven):
        return ""
    parts = []
    maj = ranked_scores(base.get("majority") or {}).get("overall_accuracy")
    ref = f"a constant map of the {majority_label(metrics)} scores {fmt(maj)} on the same test pixels"
    if below:
        parts.append(
            f"No skill: {', '.join(below)} do{'es' if len(below) == 1 else ''} not beat a no-skill baseline ({ref})."
        )
    if unproven:
        parts.append(
            f"{', '.join(unproven)} {'is' if len(unproven) == 1 else 'are'} not significantly better than a no-skill "
            "baseline (paired block bootstrap, Holm-adjusted)" + ("." if below else f" ({ref}).")
        )
    return " ".join(parts)


def comparison_rows(metrics: dict) -> list[dict[str, str]]:
    """The side-by-side model table as formatted strings, best model first, then the no-skill
    baselines (also the Prefect artifact). Scores are those of the assessable classes."""
    models = metrics.get("models") or {}
    rows = []

    def scores(r: dict) -> dict[str, Any]:
        rk = ranked_scores(r)
        ci = rk.get("ci95") or r.get("ci95") or {}
        return {
            "overall_accuracy": fmt(rk.get("overall_accuracy")),
            "overall_accuracy_ci95": fmt_ci(ci.get("overall_accuracy")),
            "kappa": fmt(rk.get("kappa")),
            "kappa_ci95": fmt_ci(ci.get("kappa")),
            "macro_f1": fmt(rk.get("macro_f1")),
            "macro_f1_ci95": fmt_ci(ci.get("macro_f1")),
        }

    for m in rank_models(models):
        r = models[m]
        maj = (r.get("vs_baselines") or {}).get("majority") or {}
        gain = maj.get("difference")
        rows.append(
            {
                "model": m,
                **scores(r),
                "vs_no_skill": "–" if gain is None else f"{gain:+.3f} {fmt_ci(maj.get('ci95'))}",
                "fit_seconds": fmt(r.get("fit_seconds"), "sec"),
                "predict_mpx_per_s": fmt(r.get("predict_mpx_per_s"), "speed"),
                "epochs": "–"
                if r.get("epochs_run") is None
                else f"{r['epochs_run']}" + ("" if r.get("best_epoch") is None else f" (best {r['best_epoch']})"),
            }
        )
    for b, r in (metrics.get("baselines") or {}).items():
        label = (
            f"no-skill: {majority_label(metrics, short=True)}" if b == "majority" else r.get("label", f"no-skill: {b}")
        )
        rows.append({"model": label, **scores(r)})
    return rows


def headline_text(metrics: dict) -> str:
    """The report's headline: leakage warning, then the inconclusive verdict or the best model
    (:func:`pipeline.evaluation.evidence.headline` over ``metrics.json["evidence"]``), the
    models that do not beat a no-skill map, and the models that failed."""
    from pipeline.evaluation.evidence import headline

    text = headline(
        metrics.get("evidence"),
        significance_sentence(metrics.get("models") or {}, metrics.get("pairwise") or []),
        label_noun(metrics.get("labels") or {}),
    )
    if flag := no_skill_sentence(metrics):
        text += " " + flag
    failed = metrics.get("failed_models") or {}
    if failed:
        text += f" {len(failed)} model(s) failed: {', '.join(failed)} (see Failed models)."
    return text

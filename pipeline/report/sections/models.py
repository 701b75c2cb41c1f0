"""The "models and inputs" table: what each model saw, the hyper-parameters it ended with, and how
long its fit took, measured inside the fit.

Every row comes from the model's own ``fit_info`` in ``metrics.json`` (what ``fit`` reported),
read through these keys, so that a model of any family (classical, deep, a plug-in) fills its
row by reporting them:

* ``inputs``: ``{"centre_pixel": bool, "indices": [..], "context_stats": ["mean", "std"],
  "window": k, "bands": [..]}`` for a pixel model (the classical models'
  :meth:`pipeline.sampling.features.FeatureSpec.describe`), or ``{"patch": k, "bands": [..]}``
  for a patch network;
* ``hyperparameters``: ``{name: value}`` of what was tuned or chosen (the SVM's C and gamma,
  trees and depth, boosting rounds kept, epochs);
* ``fit_seconds``: the fit alone, timed by the model (the stage time adds imports, reading the
  samples and, under Prefect, queueing).

A deep model that does not report ``inputs`` or ``hyperparameters`` gets them from what it does
report (``patch_size``, ``network``, ``epochs_run``, ``best_epoch``, ``selection``, ``parameters``;
the patch size from the run's config if it is not there).
"""

from __future__ import annotations

from typing import Any

from pipeline.report.context import ReportContext
from pipeline.report.document import Document
from pipeline.report.format import fmt


def _inputs(fit_info: dict, cfg: dict) -> dict[str, Any]:
    inputs = fit_info.get("inputs")
    if isinstance(inputs, dict):
        return inputs
    if "epochs_run" in fit_info or "parameters" in fit_info:  # a patch network reporting no inputs
        return {"patch": fit_info.get("patch_size") or (cfg.get("patch") or {}).get("size")}
    return {}


def _sees(inputs: dict) -> str:
    """One phrase for what a model saw: centre pixel, indices, window statistics, or a patch."""
    if inputs.get("patch"):
        k = inputs["patch"]
        return f"{k} x {k} patch of every band"
    if not inputs:
        return "–"
    parts = ["centre pixel"] if inputs.get("centre_pixel", True) else []
    if inputs.get("indices"):
        parts.append("indices " + ", ".join(str(i) for i in inputs["indices"]))
    if inputs.get("context_stats"):
        k = inputs.get("window")
        parts.append(f"{' and '.join(inputs['context_stats'])} over {k} x {k} window")
    return "; ".join(parts)


def _value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def _hyperparameters(fit_info: dict) -> dict[str, Any]:
    hp = fit_info.get("hyperparameters")
    if isinstance(hp, dict):
        return hp
    out: dict[str, Any] = {}
    for key, name in (
        ("network", "network"),
        ("epochs_run", "epochs run"),
        ("best_epoch", "best epoch"),
        ("selection", "epoch chosen on"),
        ("parameters", "weights"),
    ):
        if fit_info.get(key) is not None:
            out[name] = fit_info[key]
    return out


def model_input_rows(ctx: ReportContext) -> list[dict[str, str]]:
    """One row per model (in the report's order): what it saw, its bands, its hyper-parameters
    and the fit time it measured itself (plain text: the document escapes it)."""
    rows = []
    for m in ctx.order:
        info = ctx.models[m].get("fit_info") or {}
        inputs = _inputs(info, ctx.cfg)
        bands = inputs.get("bands")
        hp = _hyperparameters(info)
        rows.append(
            {
                "model": m,
                "sees": _sees(inputs),
                "bands": ", ".join(str(b) for b in bands) if bands else "–",
                "features": fmt(info.get("n_features"), "int") if info.get("n_features") is not None else "–",
                "hyper-parameters (chosen or reached)": "; ".join(f"{k} {_value(v)}" for k, v in hp.items()) or "–",
                "fit (s)": fmt(info.get("fit_seconds"), "sec"),
            }
        )
    return rows


def section_models(doc: Document, ctx: ReportContext) -> None:
    rows = model_input_rows(ctx)
    if not rows:
        return
    doc.h(2, "Models and inputs")
    doc.p(
        "What each model saw, the hyper-parameters it was tuned to or reached, and its fit time as the fit "
        "measured it (the model fitted on the first fold's training samples; reading the samples, "
        "imports and queueing are not included)."
    )
    doc.table(rows)

"""Which saved model ``landcover serve`` maps with, and the evaluation behind it.

A model is promoted on evidence: without ``--model``, serve takes the best model of the newest
finished run in its runs directory only when that run's evaluation could rank models
(``metrics.json["evidence"]``: conclusive, no spatial leakage) and the model beats a constant
map of the majority class; otherwise it refuses in one line naming the run and why. An
operator promotes a model deliberately with ``--model PATH`` or ``--allow-inconclusive``.

Whatever the route, :func:`model_evaluation` describes the model for every scene report and
the cycle report: its run, its overall accuracy with the interval over independent spatial
units, and whether that evaluation was conclusive.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pipeline.core.errors import InputError

log = logging.getLogger(__name__)

#: How a model came to be served (``model_evaluation()["promoted_by"]``).
BY_EVIDENCE, BY_PATH, BY_OVERRIDE = "evidence", "--model", "--allow-inconclusive"


def newest_run(runs_dir: Path) -> Path | None:
    """The newest finished run (has metrics.json) in ``runs_dir``, by manifest ``finished``."""
    best: tuple[str, float, Path] | None = None
    if not runs_dir.is_dir():
        return None
    for d in runs_dir.iterdir():
        if d.name.startswith(".") or not (d / "metrics.json").is_file():
            continue
        finished = ""
        try:
            finished = json.loads((d / "manifest.json").read_text()).get("finished") or ""
        except (OSError, ValueError, AttributeError):
            pass
        cand = (finished, (d / "metrics.json").stat().st_mtime, d)
        if best is None or cand[:2] > best[:2]:
            best = cand
    return best[2] if best else None


def model_in_runs(model: str | Path, runs_dir: str | Path) -> Path:
    """``model`` resolved, if it lies inside ``runs_dir``; else a one-line InputError.

    ``serve`` loads models only from its runs directory: whoever can write there decides
    what is mapped, so that is the one folder to protect (symbolic links are resolved
    first, so a link to a file elsewhere is refused too).
    """
    m, r = Path(model).resolve(), Path(runs_dir).resolve()
    if not m.is_relative_to(r):
        raise InputError(
            f"{model}: serve loads models only from its runs directory {r}; put the run there or pass --runs"
        )
    return m


def _read_metrics(run: Path) -> dict:
    try:
        metrics = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{run / 'metrics.json'}: unreadable ({e}); rerun or remove that run") from None
    if not isinstance(metrics, dict):
        raise InputError(f"{run / 'metrics.json'}: not a metrics file; rerun or remove that run")
    return metrics


def _run_of(model_path: Path) -> Path | None:
    """The run directory a saved model belongs to (``<run>/models/<model>.<suffix>``), if any."""
    run = model_path.parent.parent
    return run if model_path.parent.name == "models" and (run / "metrics.json").is_file() else None


def model_evaluation(model_path: str | Path, promoted_by: str = BY_PATH) -> dict[str, Any]:
    """What the scene and cycle reports say about the model: ``{"model", "run_id", "overall_accuracy",
    "ci95": [lo, hi], "interval", "conclusive", "leakage", "reasons", "promoted_by"}``.

    The accuracy and its interval are the run's ranking figures (on the classes the run could
    assess; intervals by resampling spatial units, ``metrics.json["statistics"]``); ``None``
    throughout for a model file outside any run, which no evaluation backs.
    """
    from pipeline.report.ranking import ranked_scores

    path = Path(model_path)
    name = path.name.split(".")[0]
    out: dict[str, Any] = {
        "model": name,
        "run_id": None,
        "overall_accuracy": None,
        "ci95": None,
        "interval": None,
        "conclusive": None,
        "leakage": None,
        "reasons": ["the model file is not in a run directory: no evaluation backs it"],
        "promoted_by": promoted_by,
    }
    run = _run_of(path)
    if run is None:
        return out
    metrics = _read_metrics(run)
    scores = ranked_scores((metrics.get("models") or {}).get(name) or {})
    evidence = metrics.get("evidence") or {}
    stats = metrics.get("statistics") or {}
    ci = (scores.get("ci95") or {}).get("overall_accuracy")
    n_units = stats.get("n_units") or (scores.get("ci95") or {}).get("n_blocks")
    unit = stats.get("unit") or "block"
    out.update(
        run_id=run.name,
        overall_accuracy=scores.get("overall_accuracy"),
        ci95=ci,
        interval=f"95% interval over {n_units} {unit}s (bootstrap)" if ci and n_units else None,
        conclusive=evidence.get("conclusive"),
        leakage=evidence.get("leakage"),
        reasons=[*(evidence.get("leakage_reasons") or []), *(evidence.get("reasons") or [])],
    )
    if name not in (metrics.get("models") or {}):
        out["reasons"] = [f"run {run.name} has no evaluation of {name}", *out["reasons"]]
    return out


def why_not_promoted(metrics: dict, best: str) -> list[str]:
    """Why a run's best model may not be promoted without an explicit choice ([] when it may)."""
    evidence = metrics.get("evidence")
    if not evidence:
        return ["its metrics.json has no evidence verdict (a run of an earlier version)"]
    why = []
    if evidence.get("leakage"):
        why.append("accuracy inflated by spatial leakage: " + "; ".join(evidence.get("leakage_reasons") or []))
    if evidence.get("conclusive") is not True:
        why.append("evaluation inconclusive: " + "; ".join(evidence.get("reasons") or ["no reason recorded"]))
    vs = ((metrics.get("models") or {}).get(best) or {}).get("vs_baselines") or {}
    below = [k for k, v in vs.items() if isinstance(v, dict) and v.get("beats") is False]
    if below:
        why.append(f"its best model {best} does not beat the {' and '.join(below)} no-skill baseline")
    return why


def promoted_model(runs_dir: Path, allow_inconclusive: bool = False) -> tuple[Path, dict[str, Any]]:
    """The best model of the newest finished run in ``runs_dir`` and its :func:`model_evaluation`.

    The best model is the one the run's report names (:func:`pipeline.report.ranking.rank_models`:
    overall accuracy on the assessable classes). An :class:`InputError` naming the run and why
    when there is none, or when :func:`why_not_promoted` finds a reason and ``allow_inconclusive``
    is not given (with it, a warning).
    """
    from pipeline.models import registry
    from pipeline.report.ranking import rank_models

    run = newest_run(runs_dir)
    if run is None:
        raise InputError(
            f"{runs_dir}: no finished run (with metrics.json) to take the best model from; "
            "run `landcover run CONFIG` first or pass --model PATH"
        )
    metrics = _read_metrics(run)
    models = {m: r for m, r in (metrics.get("models") or {}).items() if m in registry.model_names()}
    if not models:
        raise InputError(f"{run}: the newest run evaluated no model; fix it, or pass --model PATH")
    best = rank_models(models)[0]
    path = run / "models" / f"{best}{registry.model_suffix(best)}"
    if not path.is_file():
        raise InputError(f"{run}: the newest run's best model {best} has no saved file {path}; pass --model PATH")
    why = why_not_promoted(metrics, best)
    if why and not allow_inconclusive:
        raise InputError(
            f"{run}: not promoting its best model {best}: {'; '.join(why)}. Serve maps with a model "
            "only on conclusive, leak-free evidence: improve the run (more reference polygons), or "
            "choose deliberately with --model PATH or --allow-inconclusive"
        )
    if why:
        log.warning("serving %s of run %s although %s (--allow-inconclusive)", best, run.name, "; ".join(why))
    return path, model_evaluation(path, BY_OVERRIDE if why else BY_EVIDENCE)


def evaluation_sentence(ev: dict[str, Any]) -> str:
    """The model and its evidence in one Markdown sentence (scene and cycle reports)."""
    from pipeline.report.format import fmt, fmt_ci, md_text

    if ev.get("run_id") is None:
        return f"Model {md_text(ev.get('model'))}: no evaluation backs it (the file is not in a run directory)."
    text = (
        f"Model {md_text(ev.get('model'))} of run `{ev['run_id']}`: overall accuracy {fmt(ev.get('overall_accuracy'))}"
    )
    if ev.get("ci95"):
        text += f" ({md_text(ev.get('interval') or '95% interval')}: {fmt_ci(ev['ci95'])})"
    if ev.get("conclusive") is True and not ev.get("leakage"):
        text += "; evaluation conclusive and leak-free."
    else:
        verdict = "inconclusive" if ev.get("conclusive") is not True else "inflated by spatial leakage"
        text += f"; evaluation **{verdict}**"
        if ev.get("reasons"):
            text += f" ({md_text('; '.join(ev['reasons']))})"
        text += "."
    if ev.get("promoted_by") in (BY_PATH, BY_OVERRIDE):
        text += f" Chosen by the operator ({ev['promoted_by']})."
    return text

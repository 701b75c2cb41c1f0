"""Stage 2b, ``train``: a model's fits (:mod:`pipeline.runner.stages.fit`) pooled into what the
later stages read.

* ``eval/<model>.parquet``: the out-of-fold predictions of every fold, pooled (each tested sample
  once, in the fold that held it out; columns :data:`~pipeline.runner.stages.fit.PREDICTION_COLUMNS`).
  The metrics are computed from these.
* ``models/<model>.json``: the training record: mean fit seconds per fold, the refit's fit
  report, dropped classes, the random contrast's accuracy, and ``evaluated`` / ``mapped``:
  what the metrics describe (the k fold models, pooled) and what the maps come from (the refit
  on all labelled data).
* ``models/<model>.<skops|pt>``: the refit, written by the ``refit`` fit.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.atomic import write_json
from pipeline.models import registry
from pipeline.runner.context import RunContext
from pipeline.runner.files import read_json, write_parquet
from pipeline.runner.stages.fit import PREDICTION_COLUMNS, contrast_applies, fold_count

__all__ = ["stage_train"]

log = logging.getLogger(__name__)


def _described(ctx: RunContext, k: int, folds: list[dict], refit: dict, n_tested: int) -> tuple[dict, dict]:
    """``evaluated`` and ``mapped`` of the training record."""
    split = read_json(ctx.run_dir / "split.json")
    strategy = split.get("strategy", ctx.cfg.split.strategy)
    evaluated = {
        "what": (
            f"the {k} fold models of spatial {k}-fold cross-validation, their out-of-fold predictions pooled"
            if k > 1
            else f"the model fitted on the training part of the {strategy} split, on its test part"
        ),
        "strategy": strategy,
        "folds": k,
        "test_samples": n_tested,
        "train_samples_per_fold": [int(f["n_train"]) for f in folds],
    }
    mapped = {
        "what": "a refit on all labelled samples"
        + (" (validation units held out for early stopping)" if refit.get("n_validation") else ""),
        "train_samples": int(refit["n_train"]),
        "validation_samples": int(refit.get("n_validation", 0)),
        "fit_seconds": refit["fit_seconds"],
    }
    return evaluated, mapped


def stage_train(ctx: RunContext, model: str) -> dict:
    """Pool ``model``'s fits: out-of-fold predictions to eval/<model>.parquet, the training record
    to models/<model>.json (the refit has written models/<model>.<pt|skops>)."""
    k = fold_count(ctx)
    fits = ctx.run_dir / "fits" / model
    folds = [read_json(fits / f"fold-{i}.json") for i in range(k)]
    refit = read_json(fits / "refit.json")
    evald = pd.concat([pd.read_parquet(fits / f"fold-{i}.parquet") for i in range(k)], ignore_index=True).sort_values(
        ["fold", "sample"], kind="stable"
    )
    evald = evald[list(PREDICTION_COLUMNS)].reset_index(drop=True)
    evaluated, mapped = _described(ctx, k, folds, refit, len(evald))
    record: dict[str, Any] = {
        "fit_seconds": float(np.mean([f["fit_seconds"] for f in folds])),
        "refit_seconds": refit["fit_seconds"],
        "folds": k,
        "fit_info": refit.get("fit_info", {}),
        "evaluated": evaluated,
        "mapped": mapped,
    }
    dropped = refit.get("dropped_classes") or {}
    if dropped:
        record["dropped_classes"] = dropped
        log.warning(
            "%s left out class(es) it could not learn: %s",
            model,
            "; ".join(f"{n} ({why})" for n, why in dropped.items()),
        )
    in_folds = sorted({c for f in folds for c in (f.get("dropped_classes") or {})})
    if in_folds:
        record["dropped_classes_in_folds"] = in_folds
    if registry.get(model).deep:
        record["epochs_run"] = refit.get("epochs_run")
        record["best_epoch"] = refit.get("best_epoch")
    if contrast_applies(ctx):
        record["overall_accuracy_random"] = read_json(fits / "random.json")["overall_accuracy_random"]
    write_parquet(evald, ctx.path("eval", f"{model}.parquet"))
    write_json(ctx.path("models", f"{model}.json"), record)
    outs = [f"models/{model}{registry.model_suffix(model)}", f"models/{model}.json", f"eval/{model}.parquet"]
    return {"outputs": outs, **{key: v for key, v in record.items() if key != "fit_info"}}

"""Stage 2, ``train``: one model fitted on every fold of the spatial split, each fold's test
samples predicted, and (unless disabled) a refit on a random pixel split for the contrast."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.core.atomic import write_json
from pipeline.core.errors import InputError
from pipeline.models import registry
from pipeline.runner.context import RunContext
from pipeline.runner.files import read_json, write_parquet

if TYPE_CHECKING:
    from pipeline.models.base import Classifier, ModelMeta, TrainingData
    from pipeline.split.types import Fold

log = logging.getLogger(__name__)


def _training_data(ctx: RunContext) -> tuple[pd.DataFrame, TrainingData]:
    from pipeline.models.base import TrainingData
    from pipeline.sampling.patches import open_patches

    samples = pd.read_parquet(ctx.run_dir / "samples.parquet")
    labels = read_json(ctx.run_dir / "labels.json")
    # Group ids repeat across scenes (each is a row of its scene's label file): models get one id per polygon.
    multi = "scene" in samples and samples["scene"].nunique() > 1
    groups = (
        samples.groupby(["scene", "group"], sort=False).ngroup().to_numpy(np.int64)
        if multi
        else samples["group"].to_numpy(np.int64)
    )
    data = TrainingData(
        open_patches(ctx.run_dir / "patches.npy"),
        samples["class_id"].to_numpy(np.int64),
        groups,
        samples[["x", "y"]].to_numpy(np.float64),
        labels["band_names"],
    )
    return samples, data


def _meta(ctx: RunContext, model: str, band_names: list[str], data: TrainingData | None = None) -> ModelMeta:
    from pipeline.models.base import ModelMeta

    c = ctx.cfg.classes
    nodata = read_json(ctx.run_dir / "labels.json").get("band_nodata")
    return ModelMeta(
        model=model,
        band_names=list(band_names),
        class_ids=[x.id for x in c],
        class_names=[x.name for x in c],
        class_colors=[x.color for x in c],
        patch_size=ctx.cfg.patch.size,
        nodata=nodata,
        value_range=_value_range(ctx, data) if data is not None else None,
    )


def _value_range(ctx: RunContext, data: TrainingData) -> dict:
    """Percentiles of (a sample of) the training pixels and the bands' data types, so that
    ``landcover map`` can tell an input in other units (pipeline.inputs.value_range)."""
    from pipeline.inputs.value_range import MAX_SAMPLE, training_value_range

    n = len(data)
    idx = (
        np.arange(n)
        if n <= MAX_SAMPLE
        else np.sort(np.random.default_rng(ctx.cfg.seed).choice(n, MAX_SAMPLE, replace=False))
    )
    with ctx.open_stack() as stack:
        dtypes = list(stack.dtypes)
    return training_value_range(data.subset(idx).centre(), dtypes)


def _fit(
    ctx: RunContext, model: str, data: TrainingData, fold: Fold, meta: ModelMeta, what: str = ""
) -> tuple[Classifier, float]:
    """Fit one model on one fold; ``what`` names the fit on its progress bar (e.g. "random-split fit")."""
    from pipeline.models.base import ShowsProgress
    from pipeline.models.registry import build_model

    settings = getattr(ctx.cfg.models, model)
    m = build_model(model, settings, meta, seed=ctx.cfg.seed, device=ctx.device)
    if isinstance(m, ShowsProgress):
        m.progress = ctx.progress  # per-epoch bars of the deep models follow --no-progress
        m.progress_desc = f"train {model}" + (f" ({what})" if what else "")
    val = data.subset(fold.validation) if len(fold.validation) else None
    t0 = time.perf_counter()
    m.fit(data.subset(fold.train), val)
    return m, time.perf_counter() - t0


def dropped_classes(model: Any, meta: Any) -> dict[str, str]:
    """``{class name: why}`` for the classes a fitted model left out (``fit_info['dropped_classes']``)."""
    info = getattr(model, "fit_info", {}) or {}
    why = {str(k): v for k, v in (info.get("dropped_reason") or {}).items()}
    names = dict(zip(meta.class_ids, meta.class_names))
    return {
        names.get(int(c), str(c)): why.get(str(c), "too few training samples")
        for c in info.get("dropped_classes") or []
    }


def stage_train(ctx: RunContext, model: str) -> dict:
    """Fit ``model`` on every fold of the spatial split, predict each fold's test samples, and
    (unless disabled) refit on a random pixel split for the inflation contrast.

    Writes models/<model>.<pt|skops>, models/<model>.json, eval/<model>.parquet and, for deep
    models, curves/<model>.json and .png.
    """
    from pipeline.split.random import random_split
    from pipeline.split.types import Fold

    samples, data = _training_data(ctx)
    meta = _meta(ctx, model, data.band_names, data)
    folds = [
        Fold(*(np.asarray(f[k], dtype=np.int64) for k in ("train", "validation", "test")))
        for f in read_json(ctx.run_dir / "folds.json")
    ]
    rows = []
    fit_seconds = 0.0
    final = None
    for i, fold in enumerate(folds):
        m, secs = _fit(ctx, model, data, fold, meta, f"spatial fold {i + 1}/{len(folds)}" if len(folds) > 1 else "")
        fit_seconds += secs
        pred, conf = m.predict_patches(data.subset(fold.test).patches)
        rows.append(
            pd.DataFrame(
                {
                    "sample": fold.test,
                    "fold": i,
                    "block": samples["block"].to_numpy()[fold.test],
                    "y_true": data.y[fold.test],
                    "y_pred": pred,
                    "confidence": conf,
                }
            )
        )
        if i == 0:
            final = m  # the model that maps the scene: fit on fold 0's training blocks
    if final is None:  # the split stage writes at least one fold: an empty list is a damaged run
        raise InputError(f"{ctx.run_dir / 'folds.json'}: lists no fold; run the split stage again")
    evald = pd.concat(rows, ignore_index=True)
    record: dict[str, Any] = {
        "fit_seconds": fit_seconds / len(folds),
        "folds": len(folds),
        "fit_info": getattr(final, "fit_info", {}),
    }
    dropped = dropped_classes(final, meta)
    if dropped:
        record["dropped_classes"] = dropped
        log.warning(
            "%s left out class(es) it could not learn: %s",
            model,
            "; ".join(f"{n} ({why})" for n, why in dropped.items()),
        )
    if registry.get(model).deep:  # (torch is imported for deep models only)
        from pipeline.models.deep import DeepModel, save_learning_curves

        if not isinstance(final, DeepModel):
            raise TypeError(f"{model}: registered as a deep model, but {type(final).__name__} is not a DeepModel")
        record["epochs_run"] = final.fit_info.get("epochs_run")
        record["best_epoch"] = final.fit_info.get("best_epoch")
        save_learning_curves(
            final.history,
            ctx.path("curves", f"{model}.json"),
            ctx.path("curves", f"{model}.png"),
            note=final.fit_info.get("epoch_selection"),
        )
    if ctx.cfg.split.random_contrast and ctx.cfg.split.strategy != "random":
        rfold = random_split(samples, ctx.cfg.split.fractions, ctx.cfg.seed)
        rm, _ = _fit(ctx, model, data, rfold, meta, "random-split fit, for the contrast")
        rpred, _ = rm.predict_patches(data.subset(rfold.test).patches)
        record["overall_accuracy_random"] = float(np.mean(rpred == data.y[rfold.test]))
    suffix = registry.model_suffix(model)
    model_path = ctx.path("models", f"{model}{suffix}")
    final.save(model_path)
    write_parquet(evald, ctx.path("eval", f"{model}.parquet"))
    write_json(ctx.path("models", f"{model}.json"), record)
    outs = [f"models/{model}{suffix}", f"models/{model}.json", f"eval/{model}.parquet"]
    return {"outputs": outs, **{k: v for k, v in record.items() if k != "fit_info"}}

"""Stage 2a, the fits of one model, each a stage of its own (cached, resumable and run in
parallel one by one):

``fold-<i>`` (i = 0 .. k-1, the ``fold`` column of samples.parquet)
    Fit on fold i's training (and validation) samples, predict its test samples: the
    out-of-fold predictions, ``fits/<model>/fold-<i>.parquet`` (columns of
    :data:`PREDICTION_COLUMNS`), and the fit's record ``fits/<model>/fold-<i>.json``.
``refit``
    Fit on every labelled sample: the model that maps (``models/<model>.<skops|pt>``; for deep
    models also ``curves/<model>.json`` and ``.png``) and ``fits/<model>/refit.json``. Deep
    models hold out a validation share of whole units for early stopping
    (:func:`pipeline.split.refit.refit_fold`); the others train on everything.
``random``
    Fit and test on a random pixel split, the inflation contrast
    (``split.random_contrast``): ``fits/<model>/random.json``.

:func:`fit_parts` lists a run's parts; :mod:`pipeline.runner.stages.train` pools them.
A deep model thus trains k + 1 times (k + 2 with the random contrast).
"""

from __future__ import annotations

import re
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

__all__ = ["PREDICTION_COLUMNS", "fit_parts", "fold_count", "is_fit_part", "stage_fit"]

#: Columns of the out-of-fold predictions (``fits/<model>/fold-<i>.parquet``, pooled into
#: ``eval/<model>.parquet``): ``sample`` (row of samples.parquet), ``fold`` (the fold that tested
#: it), ``group`` (its polygon or point; unique across scenes), ``block`` (its assignment unit of
#: the split), ``y_true``, ``y_pred`` (class ids) and ``confidence`` (the predicted class's
#: probability).
PREDICTION_COLUMNS = ("sample", "fold", "group", "block", "y_true", "y_pred", "confidence")

_FOLD = re.compile(r"fold-(\d+)")


def is_fit_part(stage: str) -> bool:
    """Whether a stage name is one fit of a model (``fold-<i>``, ``refit``, ``random``)."""
    return stage in ("refit", "random") or _FOLD.fullmatch(stage) is not None


def fold_count(ctx: RunContext) -> int:
    """The number of folds of the run's split (folds.json, written by ``prepare``)."""
    n = len(read_json(ctx.run_dir / "folds.json"))
    if n == 0:  # the split stage writes at least one fold: an empty list is a damaged run
        raise InputError(f"{ctx.run_dir / 'folds.json'}: lists no fold; run the prepare stage again")
    return n


def contrast_applies(ctx: RunContext) -> bool:
    """Whether a random-split contrast is fitted (``split.random_contrast``, unless the split is random)."""
    return bool(ctx.cfg.split.random_contrast) and ctx.cfg.split.strategy != "random"


def fit_parts(ctx: RunContext) -> list[str]:
    """The fit stages of every model in this run, in the order they run: the folds, the refit,
    then the random contrast (needs the ``prepare`` stage's folds.json)."""
    parts = [f"fold-{i}" for i in range(fold_count(ctx))] + ["refit"]
    return parts + (["random"] if contrast_applies(ctx) else [])


def training_data(ctx: RunContext) -> tuple[pd.DataFrame, TrainingData]:
    """The samples table and the model's view of it (patches, class ids, polygon ids, x/y)."""
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


def model_meta(ctx: RunContext, model: str, band_names: list[str], data: TrainingData | None = None) -> ModelMeta:
    """What a saved model carries besides its weights: bands, classes, patch size, nodata, value range."""
    from pipeline.models.base import ModelMeta

    c = ctx.cfg.classes
    labels = read_json(ctx.run_dir / "labels.json")
    nodata = labels.get("band_nodata")
    return ModelMeta(
        model=model,
        band_names=list(band_names),
        class_ids=[x.id for x in c],
        class_names=[x.name for x in c],
        class_colors=[x.color for x in c],
        patch_size=ctx.cfg.patch.size,
        nodata=nodata,
        value_range=_value_range(ctx, data) if data is not None else None,
        alignment=labels.get("alignment") or None,
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


def fit_model(
    ctx: RunContext, model: str, data: TrainingData, fold: Fold, meta: ModelMeta, what: str
) -> tuple[Classifier, float]:
    """Fit one model on one partition; ``what`` names the fit on its progress bar ("cnn fold 2/5")."""
    from pipeline.models.base import ShowsProgress
    from pipeline.models.registry import build_model

    settings = getattr(ctx.cfg.models, model)
    m = build_model(model, settings, meta, seed=ctx.cfg.seed, device=ctx.device)
    if isinstance(m, ShowsProgress):
        m.progress = ctx.progress  # per-epoch bars of the deep models follow --no-progress
        m.progress_desc = f"{model} {what}"
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


def _record(model: Any, meta: ModelMeta, fold: Fold, seconds: float) -> dict[str, Any]:
    info = getattr(model, "fit_info", {}) or {}
    rec: dict[str, Any] = {
        "fit_seconds": seconds,
        "n_train": int(len(fold.train)),
        "n_validation": int(len(fold.validation)),
        "n_test": int(len(fold.test)),
        "fit_info": info,
        "dropped_classes": dropped_classes(model, meta),
    }
    for k in ("epochs_run", "best_epoch"):
        if k in info:
            rec[k] = info[k]
    return rec


def _fold_of(ctx: RunContext, i: int) -> Fold:
    from pipeline.split.types import Fold

    folds = read_json(ctx.run_dir / "folds.json")
    if not 0 <= i < len(folds):
        raise InputError(f"{ctx.run_dir / 'folds.json'}: lists {len(folds)} fold(s), not fold {i}; run prepare again")
    return Fold(*(np.asarray(folds[i][k], dtype=np.int64) for k in ("train", "validation", "test")))


def _fit_fold(ctx: RunContext, model: str, i: int) -> list[str]:
    samples, data = training_data(ctx)
    meta = model_meta(ctx, model, data.band_names)
    fold = _fold_of(ctx, i)
    k = fold_count(ctx)
    m, secs = fit_model(ctx, model, data, fold, meta, f"fold {i + 1}/{k}" if k > 1 else "spatial split")
    pred, conf = m.predict_patches(data.subset(fold.test).patches)
    table = pd.DataFrame(
        {
            "sample": fold.test,
            "fold": i,
            "group": data.groups[fold.test],
            "block": samples["block"].to_numpy()[fold.test],
            "y_true": data.y[fold.test],
            "y_pred": pred,
            "confidence": conf,
        }
    )
    base = f"fits/{model}/fold-{i}"
    write_parquet(table[list(PREDICTION_COLUMNS)], ctx.path(f"{base}.parquet"))
    write_json(ctx.path(f"{base}.json"), {"part": f"fold-{i}", **_record(m, meta, fold, secs)})
    return [f"{base}.parquet", f"{base}.json"]


def _refit(ctx: RunContext, model: str) -> list[str]:
    """The model that maps: every labelled sample; deep models hold out whole units for early stopping."""
    from pipeline.split.refit import refit_fold
    from pipeline.split.types import Fold

    samples, data = training_data(ctx)
    meta = model_meta(ctx, model, data.band_names, data)
    deep = registry.get(model).deep
    n = len(data)
    fold = (
        refit_fold(samples["block"].to_numpy(), data.y, float(ctx.cfg.split.fractions.validation), ctx.cfg.seed)
        if deep
        else Fold(np.arange(n, dtype=np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    )
    m, secs = fit_model(ctx, model, data, fold, meta, "refit on all labelled data")
    outs = []
    if deep:  # (torch is imported for deep models only)
        from pipeline.models.deep import DeepModel, save_learning_curves

        if not isinstance(m, DeepModel):
            raise TypeError(f"{model}: registered as a deep model, but {type(m).__name__} is not a DeepModel")
        save_learning_curves(
            m.history,
            ctx.path("curves", f"{model}.json"),
            ctx.path("curves", f"{model}.png"),
            note=m.fit_info.get("epoch_selection"),
        )
        outs += [f"curves/{model}.json", f"curves/{model}.png"]
    model_file = f"models/{model}{registry.model_suffix(model)}"
    m.save(ctx.path(model_file))
    rec = {
        "part": "refit",
        **_record(m, meta, fold, secs),
        "validation": "whole units drawn for early stopping" if len(fold.validation) else None,
    }
    write_json(ctx.path("fits", model, "refit.json"), rec)
    return [model_file, f"fits/{model}/refit.json", *outs]


def _random_contrast(ctx: RunContext, model: str) -> list[str]:
    from pipeline.split.random import random_split

    samples, data = training_data(ctx)
    meta = model_meta(ctx, model, data.band_names)
    rfold = random_split(samples, ctx.cfg.split.fractions, ctx.cfg.seed)
    m, secs = fit_model(ctx, model, data, rfold, meta, "random split, for the contrast")
    rpred, _ = m.predict_patches(data.subset(rfold.test).patches)
    rec = {
        "part": "random",
        **_record(m, meta, rfold, secs),
        "overall_accuracy_random": float(np.mean(rpred == data.y[rfold.test])),
    }
    write_json(ctx.path("fits", model, "random.json"), rec)
    return [f"fits/{model}/random.json"]


def stage_fit(ctx: RunContext, model: str, part: str) -> dict:
    """One fit of ``model``: ``part`` is ``fold-<i>``, ``refit`` or ``random`` (see the module)."""
    if part == "refit":
        outs = _refit(ctx, model)
    elif part == "random":
        outs = _random_contrast(ctx, model)
    else:
        match = _FOLD.fullmatch(part)
        if match is None:
            raise ValueError(f"{part!r} is not a fit of a model (fold-<i>, refit or random)")
        outs = _fit_fold(ctx, model, int(match.group(1)))
    return {"outputs": outs, "part": part}

"""Stage 4, ``assess``: every model's test predictions and maps combined into metrics.json
(accuracy with intervals, class areas, pairwise tests, per-scene accuracy, reference polygons,
whether the test set can support a ranking)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.atomic import write_json
from pipeline.runner.context import RunContext
from pipeline.runner.failures import failed_models, record_failure
from pipeline.runner.files import read_json

log = logging.getLogger(__name__)


def _assess_model(ctx: RunContext, m: str) -> tuple[dict, np.ndarray, np.ndarray, dict, pd.DataFrame]:
    """Metrics of one model from its test predictions and its maps (pooled over scenes):
    (metrics, y_true, y_pred, train record, test predictions)."""
    from pipeline.evaluation.accuracy import assess_model
    from pipeline.evaluation.metrics import confidence_summary

    ids, names = ctx.class_ids, ctx.class_names
    ev = pd.read_parquet(ctx.run_dir / "eval" / f"{m}.parquet").sort_values(["fold", "sample"], kind="stable")
    rec = read_json(ctx.run_dir / "models" / f"{m}.json")
    maprec = read_json(ctx.run_dir / "maps" / f"{m}.json")
    y, p = ev["y_true"].to_numpy(), ev["y_pred"].to_numpy()
    res = assess_model(
        y,
        p,
        ev["block"].to_numpy(),
        ids,
        names,
        map_path=[ctx.run_dir / ctx.map_path(m, sc.name) for sc in ctx.scenes()],
        seed=ctx.cfg.seed,
    )
    res["fit_seconds"] = rec["fit_seconds"]
    res["predict_mpx_per_s"] = maprec["predict_mpx_per_s"]
    for k in ("epochs_run", "best_epoch"):
        if k in rec:
            res[k] = rec[k]
    res["fit_info"] = rec.get("fit_info", {})
    res["dropped_classes"] = rec.get("dropped_classes", {})
    if "confidence" in ev:
        res["confidence"] = confidence_summary(ev["confidence"].to_numpy(), y == p)
    return res, y, p, rec, ev


def _scene_metrics(ctx: RunContext, evals: dict[str, pd.DataFrame], samples: pd.DataFrame) -> dict:
    """metrics.json["scenes"]: per scene, its sample counts per split, each model's accuracy on
    its test samples (``None`` where a scene has no test sample) and the paths of its maps."""
    from pipeline.evaluation.metrics import classification_metrics

    ids, names = ctx.class_ids, ctx.class_names
    scene_of = samples["scene"].to_numpy()
    out: dict[str, Any] = {}
    for sc in ctx.scenes():
        ss = samples[samples["scene"] == sc.name]
        entry: dict[str, Any] = {
            "labelled": sc.has_labels,
            "samples": int(len(ss)),
            "split_counts": {str(k): int(v) for k, v in ss["split"].value_counts().items()},
            "models": {},
            "maps": {},
        }
        for m, ev in evals.items():
            sel = ev[scene_of[ev["sample"].to_numpy()] == sc.name]
            if len(sel):
                r = classification_metrics(sel["y_true"].to_numpy(), sel["y_pred"].to_numpy(), ids, names)
                entry["models"][m] = {
                    "overall_accuracy": r["overall_accuracy"],
                    "kappa": r["kappa"],
                    "macro_f1": r["macro_f1"],
                    "test_samples": int(len(sel)),
                }
            else:
                entry["models"][m] = {"overall_accuracy": None, "kappa": None, "macro_f1": None, "test_samples": 0}
            entry["maps"][m] = ctx.map_path(m, sc.name)
        out[sc.name] = entry
    return out


def _reference_check(ctx: RunContext, models: list[str]) -> dict:
    """Per-polygon accuracy over all models and the polygons every model contradicts (pipeline.evaluation.reference_polygons)."""
    from pipeline.evaluation.reference_polygons import reference_check
    from pipeline.sampling.patches import open_patches

    samples = pd.read_parquet(ctx.run_dir / "samples.parquet")
    evals = {m: pd.read_parquet(ctx.run_dir / "eval" / f"{m}.parquet") for m in models}
    return reference_check(
        samples,
        evals,
        dict(zip(ctx.class_ids, ctx.class_names)),
        open_patches(ctx.run_dir / "patches.npy"),
        read_json(ctx.run_dir / "labels.json")["band_names"],
    )


def _evidence(ctx: RunContext) -> dict:
    """metrics.json "evidence": can the (pooled) test set support a ranking? (pipeline.evaluation.evidence)"""
    from pipeline.evaluation.evidence import assess_evidence, summarise_test_set

    samples = pd.read_parquet(ctx.run_dir / "samples.parquet", columns=["class_id", "block", "group"])
    test = np.unique(
        np.concatenate(
            [np.asarray(f["test"], dtype=np.int64) for f in read_json(ctx.run_dir / "folds.json")]
            or [np.empty(0, np.int64)]
        )
    )
    t = samples.iloc[test]
    summary = summarise_test_set(
        t["class_id"].to_numpy(), t["block"].to_numpy(), t["group"].to_numpy(), ctx.class_ids, ctx.class_names
    )
    empty = list(read_json(ctx.run_dir / "labels.json").get("classes_without_labels") or {})
    ev = assess_evidence(summary, read_json(ctx.run_dir / "split.json"), skip_classes=empty)
    if not ev["conclusive"]:
        log.warning("evaluation inconclusive: %s", "; ".join(ev["reasons"]))
    if ev["leakage"]:
        log.warning("accuracy inflated by spatial leakage: %s", "; ".join(ev["leakage_reasons"]))
    return ev


def stage_assess(ctx: RunContext) -> dict:
    """Combine every model's test predictions into metrics.json."""
    from pipeline.evaluation.metrics import pairwise_mcnemar

    cfg = ctx.cfg
    models: dict[str, Any] = {}
    contrast: dict[str, Any] = {}
    preds: dict[str, np.ndarray] = {}
    y_ref = None
    failed = failed_models(ctx)
    evals: dict[str, pd.DataFrame] = {}
    for m in cfg.models.enabled():
        if m in failed:
            continue
        try:
            res, y, p, rec, evals[m] = _assess_model(ctx, m)
        except Exception as e:  # noqa: BLE001 - one model's failure must not sink the others
            failed[m] = record_failure(ctx, "assess", m, e)
            continue
        models[m] = res
        preds[m] = p
        y_ref = y
        if "overall_accuracy_random" in rec:
            oa = res["overall_accuracy"]
            contrast[m] = {
                "overall_accuracy_random": rec["overall_accuracy_random"],
                "overall_accuracy_spatial": oa,
                "gap": rec["overall_accuracy_random"] - oa,
            }
    metrics = {
        "classes": [{"id": c.id, "name": c.name, "color": c.color} for c in cfg.classes],
        "models": models,
        "split": read_json(ctx.run_dir / "split.json"),
        "random_split_contrast": contrast,
        "pairwise": pairwise_mcnemar(y_ref, preds) if y_ref is not None and len(preds) > 1 else [],
        "labels": read_json(ctx.run_dir / "labels.json"),
        "failed_models": failed,
        "polygons": _reference_check(ctx, list(models)),
        **(
            {"scenes": _scene_metrics(ctx, evals, pd.read_parquet(ctx.run_dir / "samples.parquet"))}
            if ctx.multi_scene
            else {}
        ),
        "evidence": _evidence(ctx),
    }
    write_json(ctx.path("metrics.json"), metrics)
    return {"outputs": ["metrics.json"]}

"""Stage 4, ``assess``: every model's test predictions and maps combined into metrics.json
(accuracy with intervals, class areas, no-skill baselines, paired tests between models over
spatial blocks, per-scene accuracy, reference polygons, which classes and whether the test set
can support a ranking)."""

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

#: Resamples of every block bootstrap of the run (model intervals, paired tests, area intervals).
N_BOOT = 2000


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
    maps = [ctx.map_path(m, sc.name) for sc in ctx.scenes()]
    res = assess_model(
        y,
        p,
        ev["block"].to_numpy(),
        ids,
        names,
        map_path=[ctx.run_dir / path for path in maps],
        n_boot=N_BOOT,
        seed=ctx.cfg.seed,
    )
    res.update(_area_maps(ctx, maps, maprec))
    res["fit_seconds"] = rec["fit_seconds"]
    res["predict_mpx_per_s"] = maprec["predict_mpx_per_s"]
    for k in ("epochs_run", "best_epoch"):
        if k in rec:
            res[k] = rec[k]
    res["fit_info"] = rec.get("fit_info", {})
    res["dropped_classes"] = rec.get("dropped_classes", {})
    # what the figures describe (the fold models, pooled) and what the map comes from (the refit)
    for k in ("evaluated", "mapped", "refit_seconds"):
        if k in rec:
            res[k] = rec[k]
    if "confidence" in ev:
        res["confidence"] = confidence_summary(ev["confidence"].to_numpy(), y == p)
    return res, y, p, rec, ev


def _area_maps(ctx: RunContext, maps: list[str], maprec: dict) -> dict:
    """Which map the class areas and area-adjusted estimates were made from, and, when the run
    has a minimum mapping unit, the class areas of the MMU maps (pixel counting only).

    The area-adjusted estimates stratify the test split by the raw classification, whose
    per-pixel errors the test predictions measure; sieving changes the map's areas but not
    what the test pixels say, so the MMU map gets its mapped areas, not an adjusted estimate.
    """
    from pipeline.evaluation.area_estimates import area_table_from_counts
    from pipeline.evaluation.areas import class_pixels_and_areas

    out: dict[str, Any] = {"area_map": {"map": "raw classification (before any minimum mapping unit)", "paths": maps}}
    scenes = maprec.get("scenes") or {"": maprec}
    mmu = [s["mmu"] for s in scenes.values() if s.get("mmu")]
    if mmu:
        counts: dict[int, int] = {}
        area: dict[int, float] = {}
        for r in mmu:
            c, a = class_pixels_and_areas(ctx.run_dir / r["path"])
            for k in c:
                counts[k] = counts.get(k, 0) + c[k]
                area[k] = area.get(k, 0.0) + a[k]
        out["class_areas_mmu"] = {
            "mmu": mmu[0]["mmu"],
            "paths": [r["path"] for r in mmu],
            "classes": area_table_from_counts(counts, area, ctx.class_ids, ctx.class_names),
        }
    return out


def _scene_metrics(
    ctx: RunContext, evals: dict[str, pd.DataFrame], samples: pd.DataFrame, baseline_rows: pd.DataFrame
) -> dict:
    """metrics.json["scenes"]: per scene, its sample counts per split, each model's and no-skill
    baseline's accuracy on its test samples (``None`` where a scene has no test sample) and the
    paths of its maps."""
    from pipeline.evaluation.baselines import NO_SKILL
    from pipeline.evaluation.metrics import classification_metrics

    ids, names = ctx.class_ids, ctx.class_names
    scene_of = samples["scene"].to_numpy()

    def scores(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
        if not len(y):
            return {"overall_accuracy": None, "kappa": None, "macro_f1": None, "test_samples": 0}
        r = classification_metrics(y, p, ids, names)
        return {k: r[k] for k in ("overall_accuracy", "kappa", "macro_f1")} | {"test_samples": int(len(y))}

    out: dict[str, Any] = {}
    for sc in ctx.scenes():
        ss = samples[samples["scene"] == sc.name]
        entry: dict[str, Any] = {
            "labelled": sc.has_labels,
            "samples": int(len(ss)),
            "split_counts": {str(k): int(v) for k, v in ss["split"].value_counts().items()},
            "models": {},
            "baselines": {},
            "maps": {},
        }
        for m, ev in evals.items():
            sel = ev[scene_of[ev["sample"].to_numpy()] == sc.name]
            entry["models"][m] = scores(sel["y_true"].to_numpy(), sel["y_pred"].to_numpy())
            entry["maps"][m] = ctx.map_path(m, sc.name)
        sel = baseline_rows[scene_of[baseline_rows["sample"].to_numpy()] == sc.name]
        for b in NO_SKILL:
            entry["baselines"][b] = scores(sel["y_true"].to_numpy(), sel[b].to_numpy())
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
        [tr for tr, _ in _folds(ctx)],
    )


def _folds(ctx: RunContext) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) sample positions of every fold (folds.json)."""
    return [
        (np.asarray(f["train"], dtype=np.int64), np.asarray(f["test"], dtype=np.int64))
        for f in read_json(ctx.run_dir / "folds.json")
    ]


def _polygons(samples: pd.DataFrame) -> np.ndarray:
    """One id per reference polygon (n,): group ids repeat across scenes (each is a row of its
    scene's label file)."""
    if "scene" in samples and samples["scene"].nunique() > 1:
        return samples.groupby(["scene", "group"], sort=False).ngroup().to_numpy(np.int64)
    return samples["group"].to_numpy()


def _evidence(ctx: RunContext, samples: pd.DataFrame, folds: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """metrics.json "evidence": which classes can be assessed, and can the (pooled) test set
    support a ranking? (pipeline.evaluation.evidence)"""
    from pipeline.evaluation.evidence import assess_evidence, summarise_test_set

    test = np.unique(np.concatenate([te for _, te in folds] or [np.empty(0, np.int64)]))
    t = samples.iloc[test]
    from pipeline.report.format import label_noun

    labels = read_json(ctx.run_dir / "labels.json")
    empty = labels.get("classes_without_labels") or {}
    summary = summarise_test_set(
        t["class_id"].to_numpy(),
        t["block"].to_numpy(),
        _polygons(samples)[test],
        ctx.class_ids,
        ctx.class_names,
        without_labels=empty,
        noun=label_noun(labels),
    )
    ev = assess_evidence(summary, read_json(ctx.run_dir / "split.json"), skip_classes=list(empty))
    if not ev["conclusive"]:
        log.warning("evaluation inconclusive: %s", "; ".join(ev["reasons"]))
    elif ev["not_assessable"]:
        log.warning(
            "not assessable, left out of the ranking: %s",
            "; ".join(f"{k} ({v})" for k, v in ev["not_assessable"].items()),
        )
    if ev["leakage"]:
        log.warning("accuracy inflated by spatial leakage: %s", "; ".join(ev["leakage_reasons"]))
    return ev


def _comparison(
    ctx: RunContext,
    samples: pd.DataFrame,
    folds: list[tuple[np.ndarray, np.ndarray]],
    evals: dict[str, pd.DataFrame],
    evidence: dict,
) -> dict[str, Any]:
    """The no-skill baselines, every model's and baseline's scores on the assessable classes and
    the paired tests between models (pipeline.evaluation.comparison), on the test rows that
    every model predicted."""
    from pipeline.evaluation.baselines import NO_SKILL, no_skill_predictions
    from pipeline.evaluation.comparison import compare_classifiers
    from pipeline.evaluation.metrics import bootstrap_ci, classification_metrics

    ids, names = ctx.class_ids, ctx.class_names
    rows = pd.DataFrame(
        {
            "fold": np.concatenate([np.full(te.size, i, dtype=np.int64) for i, (_, te) in enumerate(folds)]),
            "sample": np.concatenate([te for _, te in folds]),
        }
    )
    keep = np.ones(len(rows), dtype=bool)
    preds: dict[str, np.ndarray] = {}
    for m, ev in evals.items():  # align every model on the run's test rows (fold, sample)
        p = rows.merge(ev[["fold", "sample", "y_pred"]], on=["fold", "sample"], how="left")["y_pred"]
        keep &= p.notna().to_numpy()
        preds[m] = p.to_numpy()
    rows = rows[keep]
    preds = {m: p[keep].astype(np.int64) for m, p in preds.items()}
    y_all = samples["class_id"].to_numpy(np.int64)
    y, units = y_all[rows["sample"].to_numpy()], samples["block"].to_numpy()[rows["sample"].to_numpy()]
    base, majority = no_skill_predictions(y_all, [tr for tr, _ in folds], rows["fold"].to_numpy(), ctx.cfg.seed)
    ranking_ids = [c for c, n in zip(ids, names) if n in set(evidence.get("assessable_classes") or [])]
    comp = compare_classifiers(y, preds, units, ids, names, ranking_ids, base, n_boot=N_BOOT, seed=ctx.cfg.seed)
    name_of = dict(zip(ids, names))
    baselines = {}
    for b, pb in base.items():
        baselines[b] = {
            "label": NO_SKILL[b][1],
            "strategy": NO_SKILL[b][0],
            **classification_metrics(y, pb, ids, names),
            "ci95": bootstrap_ci(y, pb, units, ids, n_boot=N_BOOT, seed=ctx.cfg.seed),
            "ranking": comp["ranking"][b],
        }
    baselines["majority"]["classes_per_fold"] = [name_of[c] for c in majority]
    comp["baselines"] = baselines
    comp["test_rows"] = int(len(rows))
    comp["baseline_rows"] = rows.assign(y_true=y, **base)  # for the per-scene tables
    return comp


def _distance(ctx: RunContext, samples: pd.DataFrame, folds: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """The nearest training-test pair in metres and pixels (pipeline.evaluation.distance)."""
    from pipeline.evaluation.distance import min_train_test_distance

    grids = read_json(ctx.run_dir / "labels.json").get("scene_grids") or {}
    if grids:
        zone_grid = {g["crs"]: (g["crs"], tuple(g["res"])) for g in grids.values()}
        zones = samples["scene"].map({n: g["crs"] for n, g in grids.items()}).fillna("").to_numpy()
    else:
        with ctx.open_stack() as stack:
            zone_grid = {"": (stack.grid.crs.to_wkt(), tuple(stack.grid.res))}
        zones = np.full(len(samples), "", dtype=object)
    d = min_train_test_distance(samples[["x", "y"]].to_numpy(np.float64), folds, zones, zone_grid)
    return {"min_train_test_distance_m": d["metres"], "min_train_test_distance_px": d["pixels"]}


def stage_assess(ctx: RunContext) -> dict:
    """Combine every model's test predictions into metrics.json."""
    from pipeline.evaluation.comparison import method_record

    cfg = ctx.cfg
    models: dict[str, Any] = {}
    contrast: dict[str, Any] = {}
    failed = failed_models(ctx)
    evals: dict[str, pd.DataFrame] = {}
    for m in cfg.models.enabled():
        if m in failed:
            continue
        try:
            res, _, _, rec, ev = _assess_model(ctx, m)
        except Exception as e:  # noqa: BLE001 - one model's failure must not sink the others
            failed[m] = record_failure(ctx, "assess", m, e)
            continue
        models[m], evals[m] = res, ev
        if "overall_accuracy_random" in rec:
            oa = res["overall_accuracy"]
            contrast[m] = {
                "overall_accuracy_random": rec["overall_accuracy_random"],
                "overall_accuracy_spatial": oa,
                "gap": rec["overall_accuracy_random"] - oa,
            }
    samples = pd.read_parquet(ctx.run_dir / "samples.parquet")
    folds = _folds(ctx)
    evidence = _evidence(ctx, samples, folds)
    comp = _comparison(ctx, samples, folds, evals, evidence)
    for m in models:
        models[m]["ranking"] = comp["ranking"][m]
        models[m]["vs_baselines"] = comp["vs_baselines"][m]
    split = read_json(ctx.run_dir / "split.json")
    split["audit"] = {**(split.get("audit") or {}), **_distance(ctx, samples, folds)}
    baseline_rows = comp.pop("baseline_rows")
    metrics = {
        "classes": [{"id": c.id, "name": c.name, "color": c.color} for c in cfg.classes],
        "models": models,
        "baselines": comp["baselines"],
        "statistics": {
            **method_record("block", N_BOOT),
            "n_units": evidence["test_set"]["blocks"],
            "test_rows_compared": comp["test_rows"],
            "ranking_classes": evidence["assessable_classes"],
        },
        "split": split,
        "random_split_contrast": contrast,
        "pairwise": comp["pairwise"],
        "labels": read_json(ctx.run_dir / "labels.json"),
        "failed_models": failed,
        "polygons": _reference_check(ctx, list(models)),
        **({"scenes": _scene_metrics(ctx, evals, samples, baseline_rows)} if ctx.multi_scene else {}),
        "evidence": evidence,
    }
    write_json(ctx.path("metrics.json"), metrics)
    return {"outputs": ["metrics.json"]}

"""Benchmark: each model's accuracy before and after spatial context, and gradient boosting's speed.

``landcover bench accuracy`` (or ``python -m bench.accuracy``), on the demo and the three shared
scenes (``configs/*.yaml``; a scene whose files are absent is skipped and listed):

1. **before / after**: the whole pipeline (``pipeline.run_config``, in this process) twice per
   scene on the config's own split, the default split strategy unless the config names one:
   *before*, the classical models on the centre pixel's bands (``features: {patch_stats: false,
   indices: []}``, the defaults of version 0.1) and without gradient boosting; *after*, the
   defaults of this version (the pixel's bands, the indices its band names allow and each band's
   mean and standard deviation over the patch window) with gradient boosting added. The random-split
   contrast is off (it refits every model; it says nothing here). Per model: overall accuracy and
   its 95% interval (bootstrap over spatial blocks), macro-F1, kappa, test pixels and blocks,
   and the fit time the fit measured itself (``fit_info``);
2. **gradient boosting against the forest**: the scene mapped with the *after* run's saved
   random forest and gradient boosting (``classify_raster``, as ``landcover map``), interleaved,
   ``--map-repeats`` times; median seconds and ``speed_ratio`` = forest seconds / boosting
   seconds (above 1: boosting maps faster);
3. **HistGradientBoosting or LightGBM** (why the model is LightGBM): both fitted on the *after*
   run's first fold with the same features, the same early stopping (30 rounds on the validation
   split's log-loss, learning rate 0.1, 31 leaves, 20 samples a leaf) and one thread each,
   interleaved, ``--fit-repeats`` times: test accuracy, rounds kept, median fit seconds and the
   library's own prediction rate on the training features tiled to 50,000 rows;
4. writes ``reports/bench/accuracy.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.atomic import write_json

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "reports" / "bench" / "accuracy.json"
SCENES = ("demo", "landsat5_rstoolbox", "landsat7_ceholden", "sentinel2_eolearn")
CLASSICAL = ("decision_tree", "random_forest", "svm", "max_likelihood")
BOOSTING = "gradient_boosting"


def _run(config: Path, models: list[str], overrides: list[str], out: Path, run_id: str) -> Path:
    from pipeline import run_config

    return run_config(
        config, models=models, overrides=["split.random_contrast=false", *overrides], out=out, run_id=run_id
    )


def _model_rows(run_dir: Path) -> dict[str, dict]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    out = {}
    for name, m in (metrics.get("models") or {}).items():
        info = m.get("fit_info") or {}
        ci = m.get("ci95") or {}
        out[name] = {
            "overall_accuracy": m.get("overall_accuracy"),
            "overall_accuracy_ci95": ci.get("overall_accuracy"),
            "macro_f1": m.get("macro_f1"),
            "kappa": m.get("kappa"),
            "test_pixels": sum(int(c.get("support") or 0) for c in (m.get("per_class") or {}).values()),
            "test_blocks": ci.get("n_blocks"),
            "fit_seconds_in_fit": info.get("fit_seconds"),
            "n_features": info.get("n_features"),
            "inputs": info.get("inputs"),
            "hyperparameters": info.get("hyperparameters"),
        }
    out_failed = metrics.get("failed_models") or {}
    for name, why in out_failed.items():
        out[name] = {"failed": why}
    return out


def _split_of(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    split = metrics.get("split") or {}
    return {k: split.get(k) for k in ("strategy", "folds", "block_size", "buffer") if k in split}


def map_speed(run_dir: Path, config: Path, repeats: int) -> dict:
    """The scene mapped with the run's saved forest and boosting, interleaved ``repeats`` times."""
    from pipeline.config.loading import load_config
    from pipeline.mapping.classify import classify_raster
    from pipeline.models import load_model
    from pipeline.models.tree_infer import warm_up
    from pipeline.runner.context import RunContext

    cfg, base = load_config(run_dir / "config.yaml")
    ctx = RunContext(cfg, run_dir, Path(config).resolve().parent, progress=False)
    names = ("random_forest", BOOSTING)
    models = {n: load_model(run_dir / "models" / f"{n}.skops") for n in names}
    warm_up()  # the kernels' first load, untimed for both
    for m in models.values():  # and with the types mapping passes them (a window's feature planes)
        side = 2 * int(m.halo) + 1
        m.predict_block(np.zeros((len(m.meta.band_names), side, side), np.float32))
    seconds: dict[str, list[float]] = {n: [] for n in names}
    pixels = 0
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(max(1, repeats)):
            for n in names:
                with ctx.open_stack() as stack:
                    res = classify_raster(
                        models[n], stack, Path(tmp) / f"{n}.tif", window_size=cfg.mapping.window_size, progress=False
                    )
                seconds[n].append(float(res["seconds"]))
                pixels = int(res["pixels"])
    med = {n: float(np.median(s)) for n, s in seconds.items()}
    return {
        "pixels": pixels,
        "seconds": med,
        "seconds_all": seconds,
        "mpx_per_s": {n: pixels / 1e6 / s for n, s in med.items()},
        "speed_ratio": med["random_forest"] / med[BOOSTING],
        "speed_ratio_per_repeat": [a / b for a, b in zip(seconds["random_forest"], seconds[BOOSTING])],
        "rounds_kept": (models[BOOSTING].fit_info or {}).get("rounds_kept"),
        "trees": len(models["random_forest"].estimator.estimators_),
    }


def boosting_choice(run_dir: Path, repeats: int) -> dict:
    """HistGradientBoostingClassifier against LightGBM on the run's first fold (see module docstring)."""
    import warnings

    import lightgbm as lgb
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    from pipeline.sampling.features import FeatureSpec
    from pipeline.sampling.patches import open_patches
    from pipeline.sampling.settings import FeatureConfig

    samples = pd.read_parquet(run_dir / "samples.parquet")
    labels = json.loads((run_dir / "labels.json").read_text())
    fold = json.loads((run_dir / "folds.json").read_text())[0]
    y = samples["class_id"].to_numpy()
    P = np.asarray(open_patches(run_dir / "patches.npy")[:])
    X = FeatureSpec.from_config(FeatureConfig(), labels["band_names"], P.shape[-1]).from_patches(P)
    tr, va, te = (np.asarray(fold[k], dtype=np.int64) for k in ("train", "validation", "test"))
    classes = np.unique(y[tr])
    va = va[np.isin(y[va], classes)]
    if len(np.unique(y[va])) < 2:
        return {"skipped": "the validation split holds fewer than two training classes"}
    yi, yv = np.searchsorted(classes, y[tr]), np.searchsorted(classes, y[va])
    times: dict[str, list[float]] = {"hist_gradient_boosting": [], "lightgbm": []}
    hgb = booster = None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        hgb = HistGradientBoostingClassifier(
            max_iter=1000, learning_rate=0.1, max_leaf_nodes=31, min_samples_leaf=20, early_stopping=True,
            n_iter_no_change=30, scoring="loss", random_state=0,
        )  # fmt: skip
        # one OpenMP thread, as LightGBM's: on a shared machine more threads only spin (see the module docstring)
        with warnings.catch_warnings(action="ignore"), threadpool_limits(limits=1, user_api="openmp"):
            hgb.fit(X[tr], yi, X_val=X[va], y_val=yv)
        times["hist_gradient_boosting"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        params = dict(
            objective="multiclass" if len(classes) > 2 else "binary", learning_rate=0.1, num_leaves=31,
            min_child_samples=20, num_threads=1, seed=0, deterministic=True, force_col_wise=True, verbosity=-1,
        )  # fmt: skip
        if len(classes) > 2:
            params["num_class"] = len(classes)
        train_set = lgb.Dataset(X[tr], yi)
        booster = lgb.train(
            params, train_set, 1000, valid_sets=[lgb.Dataset(X[va], yv, reference=train_set)],
            callbacks=[lgb.early_stopping(30, verbose=False)],
        )  # fmt: skip
        times["lightgbm"].append(time.perf_counter() - t0)
    assert hgb is not None and booster is not None
    proba = booster.predict(X[te], num_iteration=booster.best_iteration)
    proba = np.column_stack([1 - proba, proba]) if proba.ndim == 1 else proba
    big = np.tile(X, (max(1, 50_000 // len(X)), 1))
    rate: dict[str, list[float]] = {"hist_gradient_boosting": [], "lightgbm": []}
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        with threadpool_limits(limits=1, user_api="openmp"):
            hgb.predict_proba(big)
        rate["hist_gradient_boosting"].append(len(big) / 1e6 / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        booster.predict(big, num_iteration=booster.best_iteration, num_threads=1)
        rate["lightgbm"].append(len(big) / 1e6 / (time.perf_counter() - t0))
    return {
        "n_train": int(len(tr)),
        "n_validation": int(len(va)),
        "n_test": int(len(te)),
        "n_features": int(X.shape[1]),
        "hist_gradient_boosting": {
            "overall_accuracy": float(np.mean(classes[hgb.predict(X[te])] == y[te])),
            "rounds_kept": int(hgb.n_iter_),
            "fit_seconds": float(np.median(times["hist_gradient_boosting"])),
            "predict_mpx_per_s": float(np.median(rate["hist_gradient_boosting"])),
        },
        "lightgbm": {
            "overall_accuracy": float(np.mean(classes[np.argmax(proba, axis=1)] == y[te])),
            "rounds_kept": int(booster.best_iteration),
            "fit_seconds": float(np.median(times["lightgbm"])),
            "predict_mpx_per_s": float(np.median(rate["lightgbm"])),
        },
    }


def run_bench(
    out_json: Path = DEFAULT_OUT,
    scenes: tuple[str, ...] = SCENES,
    models: tuple[str, ...] = CLASSICAL,
    map_repeats: int = 3,
    fit_repeats: int = 3,
    workdir: Path | None = None,
    log: Any = print,
) -> dict:
    """Run the benchmark and write ``out_json``; returns the report."""
    import sklearn

    from pipeline.models import registry

    load_before = os.getloadavg()
    report: dict[str, Any] = {"benchmark": "accuracy", "scenes": {}, "skipped": {}}
    classical = [m for m in models if not registry.get(m).deep and m != BOOSTING]
    deep = [m for m in models if registry.get(m).deep]
    with tempfile.TemporaryDirectory(prefix="bench-accuracy-", dir=workdir) as tmp:
        for scene in scenes:
            config = REPO / "configs" / f"{scene}.yaml"
            before_models = [*classical, *deep]
            after_models = [*classical[:2], BOOSTING, *classical[2:], *deep]
            centre = [
                o
                for m in classical
                for o in (f"models.{m}.features.patch_stats=false", f"models.{m}.features.indices=[]")
            ]
            t0 = time.perf_counter()
            try:
                before = _run(config, before_models, centre, Path(tmp), f"{scene}-before")
            except Exception as e:  # noqa: BLE001 - a scene whose data is absent: say so, go on
                from pipeline.core.errors import InputError

                if not isinstance(e, InputError):
                    raise
                report["skipped"][scene] = str(e)
                log(f"{scene}: skipped ({e})")
                continue
            after = _run(config, after_models, [], Path(tmp), f"{scene}-after")
            log(f"{scene}: both runs in {time.perf_counter() - t0:.0f} s")
            entry: dict[str, Any] = {
                "config": f"configs/{scene}.yaml",
                "split": _split_of(after),
                "before": _model_rows(before),
                "after": _model_rows(after),
            }
            if "random_forest" in classical:
                entry["boosting_vs_forest_mapping"] = map_speed(after, config, map_repeats)
                log(f"{scene}: forest / boosting map time {entry['boosting_vs_forest_mapping']['speed_ratio']:.2f}")
            entry["hist_gradient_boosting_vs_lightgbm"] = boosting_choice(after, fit_repeats)
            report["scenes"][scene] = entry
    report.update(
        machine={
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sklearn": sklearn.__version__,
            "lightgbm": __import__("lightgbm").__version__,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        models=list(models),
        map_repeats=map_repeats,
        fit_repeats=fit_repeats,
    )
    write_json(Path(out_json), report)
    return report


def _acc(r: dict | None) -> str:
    if not r or r.get("overall_accuracy") is None:
        return "–" if not r or "failed" not in r else "failed"
    ci = r.get("overall_accuracy_ci95") or [None, None]
    return f"{r['overall_accuracy']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci[0] is not None else "")


def table(report: dict) -> str:
    """Markdown tables of a report (docs/benchmarks.md)."""
    lines = [
        "| scene | model | OA before (centre pixel) | OA after (context) | macro-F1 before / after | fit s (in the fit) after |"
    ]
    lines.append("| --- | --- | --- | --- | --- | ---: |")
    for scene, e in report["scenes"].items():
        for m in dict.fromkeys([*e["before"], *e["after"]]):
            b, a = e["before"].get(m), e["after"].get(m)
            f1 = " / ".join(f"{r['macro_f1']:.3f}" if r and r.get("macro_f1") is not None else "–" for r in (b, a))
            fit = a.get("fit_seconds_in_fit") if a else None
            lines.append(f"| {scene} | {m} | {_acc(b)} | {_acc(a)} | {f1} | {'–' if fit is None else f'{fit:.2f}'} |")
    lines += [
        "",
        "| scene | forest s | boosting s | forest / boosting | rounds kept | HGB OA / fit s | LightGBM OA / fit s |",
    ]
    lines.append("| --- | ---: | ---: | ---: | ---: | --- | --- |")
    for scene, e in report["scenes"].items():
        s = e.get("boosting_vs_forest_mapping") or {}
        c = e.get("hist_gradient_boosting_vs_lightgbm") or {}
        h, lg = c.get("hist_gradient_boosting") or {}, c.get("lightgbm") or {}
        sec = s.get("seconds") or {}
        lines.append(
            f"| {scene} | {sec.get('random_forest', float('nan')):.3f} | {sec.get(BOOSTING, float('nan')):.3f} "
            f"| {s.get('speed_ratio', float('nan')):.2f} | {s.get('rounds_kept', '–')} "
            f"| {h.get('overall_accuracy', float('nan')):.3f} / {h.get('fit_seconds', float('nan')):.2f} "
            f"| {lg.get('overall_accuracy', float('nan')):.3f} / {lg.get('fit_seconds', float('nan')):.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from pipeline.models import registry

    p = argparse.ArgumentParser(prog="landcover bench accuracy", description=__doc__.splitlines()[0])
    p.add_argument("--scenes", default=",".join(SCENES), help="comma-separated configs/<scene>.yaml to run")
    p.add_argument(
        "--models", default=",".join(CLASSICAL), help="models run before and after (gradient boosting is added after)"
    )
    p.add_argument("--map-repeats", type=int, default=3, help="interleaved mappings of forest and boosting (medians)")
    p.add_argument("--fit-repeats", type=int, default=3, help="interleaved HGB / LightGBM fits (medians)")
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"JSON report (default {DEFAULT_OUT.relative_to(REPO)})"
    )
    p.add_argument("--workdir", type=Path, default=None, help="where the temporary runs go")
    a = p.parse_args(argv)
    scenes = tuple(s.strip() for s in a.scenes.split(",") if s.strip())
    models = tuple(m.strip() for m in a.models.split(",") if m.strip())
    bad = [s for s in scenes if not (REPO / "configs" / f"{s}.yaml").is_file()]
    bad_m = [m for m in models if m not in registry.model_names() or m == BOOSTING]
    if bad or bad_m:
        p.error(
            f"no config configs/{bad[0]}.yaml" if bad else f"--models: {bad_m[0]!r} (boosting is added after by itself)"
        )
    report = run_bench(
        a.out,
        scenes,
        models,
        a.map_repeats,
        a.fit_repeats,
        a.workdir,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(table(report))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

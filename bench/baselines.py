"""Benchmark: full-map prediction speed and memory of the classical baselines.

``landcover bench baselines`` (or ``python -m bench.baselines``):

1. writes a synthetic ``size x size x 6`` uint16 GeoTIFF (tiled 512, DEFLATE) in a
   temporary folder, window by window (memory-bounded), with spatially structured
   classes (smooth random fields, six classes with overlapping spectra, within-class
   texture and noise, a nodata corner), and keeps a sample of labelled pixels
   (:func:`bench.synthetic.make_scene`);
2. fits each baseline on that sample, with the band values as features (``features:
   {indices: [], patch_stats: false}``: the speed of the models themselves, comparable across
   versions; ``landcover bench accuracy`` measures the default features): the SVM on
   ``svm_train`` pixels so that it keeps thousands of support vectors;
3. maps the raster with :func:`pipeline.mapping.classify.classify_raster`, each model in a
   fresh subprocess so that ``peak_rss_mb`` (``VmHWM`` of that process) is the
   model's own peak; the I/O floor is the same mapping with a model that returns
   zeros (read + write only, :mod:`bench.floors`);
4. for the SVM, measures ``SVC.predict`` and the fast path (:class:`pipeline.models.svm_fast.FastSVC`)
   on the same ``sk_pixels`` pixels of the raster in the same run (:mod:`bench.vs_sklearn`):
   ``speedup_vs_sklearn`` = fast / sklearn pixel rate (both on in-memory features, both
   on this machine: sklearn's libsvm uses one core, the fast path all cores), and
   ``label_agreement`` = share of identical labels. ``map_speedup_vs_sklearn`` also
   compares the full mapping rate (with I/O) to ``SVC.predict``;
5. for the random forest, gradient boosting and the decision tree, measures scikit-learn (``predict_proba``, the
   forest with its ``n_jobs``) against the compiled path the mapping uses
   (:mod:`pipeline.models.tree_infer`) on the same pixels, interleaved (:mod:`bench.vs_sklearn`),
   with the label agreement and the forest's largest confidence difference; every model's
   mapping time is also given over the I/O floor's (``seconds_over_io_floor``, medians and per
   repeat) and over a second floor that writes a real map (``io_floor_map``: labels from one
   band cut at fixed values, :class:`bench.floors.BandThresholdModel`), because compressing
   real labels costs far more than zeros;
6. writes the JSON report (default ``reports/bench/baselines.json``, with the load average
   before and after) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.floors import FLOORS, floor_model
from bench.synthetic import BANDS, TILE, make_scene, model_meta
from bench.vs_sklearn import svm_vs_sklearn, trees_vs_sklearn
from pipeline.core.atomic import write_json

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "reports" / "bench" / "baselines.json"
MODELS = ("decision_tree", "random_forest", "gradient_boosting", "svm", "max_likelihood")


# -- models ------------------------------------------------------------------------------------
def fit_models(
    sample: dict[str, np.ndarray],
    models: tuple[str, ...],
    workdir: Path,
    seed: int = 0,
    svm_train: int = 10000,
    rf_trees: int = 100,
    n_train: int = 20000,
) -> dict[str, dict]:
    """Fit each baseline on the pixel sample and save it (skops) into ``workdir``."""
    from pipeline.models import build_model
    from pipeline.models.base import TrainingData
    from pipeline.models.settings import (
        DecisionTreeConfig,
        GradientBoostingConfig,
        MaxLikelihoodConfig,
        RandomForestConfig,
        SVMConfig,
    )
    from pipeline.sampling.settings import FeatureConfig

    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(sample["y"]))[:n_train]
    train = TrainingData(
        sample["X"][idx][:, :, None, None], sample["y"][idx], sample["groups"][idx], sample["xy"][idx], list(BANDS)
    )
    bands = FeatureConfig(indices=[], patch_stats=False)
    settings = {
        "decision_tree": DecisionTreeConfig(features=bands),
        "random_forest": RandomForestConfig(n_estimators=rf_trees, n_jobs=2, features=bands),
        "gradient_boosting": GradientBoostingConfig(features=bands),
        "svm": SVMConfig(C=[10.0], gamma=["scale"], max_train_samples=max(10, svm_train), features=bands),
        "max_likelihood": MaxLikelihoodConfig(features=bands),
    }
    # gradient boosting stops early on a fifth of the sample, drawn apart from its training pixels
    validation = None
    if "gradient_boosting" in models:
        rest = rng.permutation(np.setdiff1d(np.arange(len(sample["y"])), idx))[: max(1, n_train // 4)]
        validation = TrainingData(
            sample["X"][rest][:, :, None, None],
            sample["y"][rest],
            sample["groups"][rest],
            sample["xy"][rest],
            list(BANDS),
        )
    out = {}
    for name in models:
        model = build_model(name, settings[name], model_meta(name, BANDS), seed=seed)
        t0 = time.perf_counter()
        model.fit(train, validation if name == "gradient_boosting" else None)
        fit_s = time.perf_counter() - t0
        path = model.save(workdir / f"{name}.skops")
        out[name] = {"path": str(path), "fit_seconds": round(fit_s, 2), "fit_info": model.fit_info}
    return out


# -- child process: map once, report speed and peak memory -------------------------------------
def _child(model_path: str, raster: str, out_tif: str, window_size: int) -> dict:
    from pipeline.inputs.raster import RasterStack
    from pipeline.mapping.classify import classify_raster

    warm = 0.0
    if model_path in FLOORS:
        model: Any = floor_model(model_path, model_meta("decision_tree", BANDS))
    else:
        from pipeline.models import load_model

        model = load_model(model_path)
        t0 = time.perf_counter()  # untimed, reported: loading the compiled kernels (Numba) a model maps with
        if model.name in ("decision_tree", "random_forest", "gradient_boosting"):
            from pipeline.models.tree_infer import warm_up

            warm_up()
        side = 2 * int(model.halo) + 1  # one tiny window: the kernels with the types mapping passes them
        model.predict_block(np.zeros((len(model.meta.band_names), side, side), np.float32))
        warm = time.perf_counter() - t0
    cpu0 = time.process_time()  # every thread of this process: what the mapping costs, whatever else runs
    with RasterStack.open(raster) as stack:
        res = classify_raster(model, stack, Path(out_tif), window_size=window_size, progress=False)
    cpu = time.process_time() - cpu0
    from bench.procstat import peak_rss_mb

    return {
        "mpx_per_s": res["mpx_per_s"],
        "seconds": res["seconds"],
        "pixels": res["pixels"],
        "peak_rss_mb": peak_rss_mb(),
        "kernel_load_seconds": warm,
        "cpu_seconds": cpu,
    }


def _run_child(model_path: str, raster: Path, out_tif: Path, window_size: int) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "bench.baselines", "--child", model_path, str(raster), str(out_tif), str(window_size)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child for {model_path} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- driver ------------------------------------------------------------------------------------
def run_bench(
    out_json: Path = DEFAULT_OUT,
    size: int = 4096,
    models: tuple[str, ...] = MODELS,
    seed: int = 0,
    svm_train: int = 10000,
    rf_trees: int = 100,
    n_train: int = 20000,
    sk_pixels: int = 200_000,
    window_size: int = 512,
    workdir: Path | None = None,
    log=print,
    repeats: int = 3,
    map_repeats: int = 1,
) -> dict:
    """Run the benchmark and write ``out_json``; returns the report.

    The mappings (I/O floor and every model) run ``map_repeats`` times interleaved (all of
    them, then all again) and report medians; the SVM comparison runs ``repeats`` times."""
    import sklearn

    out_json = Path(out_json)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-baselines-", dir=workdir) as tmp:
        tmp = Path(tmp)
        raster = tmp / "scene.tif"
        t0 = time.perf_counter()
        sample = make_scene(raster, size, seed=seed, n_sample=int(1.3 * max(n_train, svm_train)))
        log(
            f"scene {size} x {size} x {len(BANDS)} written in {time.perf_counter() - t0:.1f} s "
            f"({len(sample['y'])} labelled pixels sampled)"
        )
        fitted = fit_models(sample, models, tmp, seed=seed, svm_train=svm_train, rf_trees=rf_trees, n_train=n_train)
        for name, f in fitted.items():
            log(f"fit {name}: {f['fit_seconds']} s")
        runs: dict[str, list[dict]] = {name: [] for name in (*FLOORS, *models)}
        for rep in range(max(1, map_repeats)):  # interleaved: every mapping once, then again
            for name in runs:
                path = name if name in FLOORS else fitted[name]["path"]
                r = _run_child(path, raster, tmp / f"{name}.tif", window_size)
                runs[name].append(r)
                log(
                    f"[{rep + 1}/{map_repeats}] map {name}: {r['mpx_per_s']:.3f} Mpx/s, "
                    f"peak {r['peak_rss_mb']:.0f} MB, {r['seconds']:.1f} s"
                )

        def median_run(rs: list[dict]) -> dict:
            secs = float(np.median([r["seconds"] for r in rs]))
            return {
                "mpx_per_s": rs[0]["pixels"] / 1e6 / secs,
                "seconds": secs,
                "pixels": rs[0]["pixels"],
                "peak_rss_mb": float(np.median([r["peak_rss_mb"] for r in rs])),
                "seconds_all": [r["seconds"] for r in rs],
                "kernel_load_seconds": float(np.median([r.get("kernel_load_seconds", 0.0) for r in rs])),
                "cpu_seconds": float(np.median([r["cpu_seconds"] for r in rs])),
                "cpu_seconds_all": [r["cpu_seconds"] for r in rs],
            }

        io = median_run(runs["io_floor"])
        io_map = median_run(runs["io_floor_map"])
        results: dict[str, dict] = {}
        for name in models:
            results[name] = {
                **median_run(runs[name]),
                "fit_seconds": fitted[name]["fit_seconds"],
                "fit_info": fitted[name]["fit_info"],
            }
        for name in ("random_forest", "gradient_boosting", "decision_tree"):
            if name in models:
                cmp_ = trees_vs_sklearn(Path(fitted[name]["path"]), raster, sk_pixels, repeats=repeats)
                results[name].update(cmp_)
                log(
                    f"{name} vs {cmp_['reference']} on {cmp_['n_pixels_compared']} px: "
                    f"{cmp_['speedup_vs_sklearn']:.2f}x (per repeat "
                    f"{', '.join(f'{r:.2f}' for r in cmp_['speedup_per_repeat'])}), "
                    f"agreement {cmp_['label_agreement']:.6f}"
                )
        for name in models:
            results[name]["seconds_over_io_floor"] = results[name]["seconds"] / io["seconds"]
            results[name]["seconds_over_io_floor_per_repeat"] = [
                a / b for a, b in zip(results[name]["seconds_all"], io["seconds_all"])
            ]
            # CPU seconds (all threads, the COG conversion included) over the floors': what the model
            # adds, which the wall-clock ratio tends to when other processes keep both cores busy
            results[name]["cpu_over_io_floor"] = results[name]["cpu_seconds"] / io["cpu_seconds"]
            results[name]["cpu_over_io_floor_map"] = results[name]["cpu_seconds"] / io_map["cpu_seconds"]
            results[name]["seconds_over_io_floor_map"] = results[name]["seconds"] / io_map["seconds"]
            results[name]["seconds_over_io_floor_map_per_repeat"] = [
                a / b for a, b in zip(results[name]["seconds_all"], io_map["seconds_all"])
            ]
        if "random_forest" in models and "gradient_boosting" in models:
            rf, gb = results["random_forest"], results["gradient_boosting"]
            gb["map_speedup_vs_random_forest"] = rf["seconds"] / gb["seconds"]
            gb["map_speedup_vs_random_forest_per_repeat"] = [
                a / b for a, b in zip(rf["seconds_all"], gb["seconds_all"])
            ]
            log(f"gradient boosting maps {gb['map_speedup_vs_random_forest']:.2f}x as fast as the forest")
        if "svm" in models:
            cmp_ = svm_vs_sklearn(Path(fitted["svm"]["path"]), raster, sk_pixels, repeats=repeats)
            cmp_["map_speedup_vs_sklearn"] = results["svm"]["mpx_per_s"] / cmp_["sklearn_mpx_per_s"]
            results["svm"].update(cmp_)
            log(
                f"svm vs SVC.predict on {cmp_['n_pixels_compared']} px: {cmp_['speedup_vs_sklearn']:.1f}x, "
                f"agreement {cmp_['label_agreement']:.6f}"
            )
    report = {
        "benchmark": "baselines",
        "size": size,
        "bands": len(BANDS),
        "pixels": size * size,
        "window_size": window_size,
        "raster": {"dtype": "uint16", "tile": TILE, "compress": "deflate", "predictor": 2},
        "repeats": repeats,
        "map_repeats": map_repeats,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "io_floor_mpx_per_s": io["mpx_per_s"],
        "io_floor_peak_rss_mb": io["peak_rss_mb"],
        "io_floor_seconds": io["seconds"],
        "io_floor_seconds_all": io["seconds_all"],
        "io_floor_cpu_seconds": io["cpu_seconds"],
        "io_floor_map_cpu_seconds": io_map["cpu_seconds"],
        "io_floor_map_mpx_per_s": io_map["mpx_per_s"],
        "io_floor_map_peak_rss_mb": io_map["peak_rss_mb"],
        "io_floor_map_seconds": io_map["seconds"],
        "io_floor_map_seconds_all": io_map["seconds_all"],
        "models": results,
    }
    write_json(out_json, report)  # atomic; NaN -> null
    return report


def table(report: dict) -> str:
    """Markdown table of a report (docs/benchmarks.md)."""
    lines = ["| model | Mpx/s | peak RSS (MB) | notes |", "| --- | ---: | ---: | --- |"]
    lines.append(
        f"| I/O floor (read + write) | {report['io_floor_mpx_per_s']:.2f} | {report['io_floor_peak_rss_mb']:.0f} | |"
    )
    lines.append(
        f"| I/O floor, real map (read + one-band threshold + write) | {report['io_floor_map_mpx_per_s']:.2f} "
        f"| {report['io_floor_map_peak_rss_mb']:.0f} | |"
    )
    for name, r in report["models"].items():
        note = ""
        if "speedup_vs_sklearn" in r and "trees" in r:
            note = (
                f"{r['speedup_vs_sklearn']:.2f}x `{r['reference'].split('.')[-1]}` "
                f"({r['fast_mpx_per_s']:.3f} vs {r['sklearn_mpx_per_s']:.4f} Mpx/s on {r['n_pixels_compared']} px), "
                f"label agreement {100 * r['label_agreement']:.4f}%"
            )
        elif "speedup_vs_sklearn" in r:
            note = (
                f"{r['n_support_vectors']} SVs; {r['speedup_vs_sklearn']:.1f}x `SVC.predict` "
                f"({r['fast_mpx_per_s']:.3f} vs {r['sklearn_mpx_per_s']:.4f} Mpx/s on {r['n_pixels_compared']} px), "
                f"label agreement {100 * r['label_agreement']:.4f}%"
            )
        note = (
            f"{r['seconds_over_io_floor']:.2f}x / {r['seconds_over_io_floor_map']:.2f}x the I/O floor's time "
            f"(zeros / real map), CPU {r['cpu_over_io_floor']:.2f}x / {r['cpu_over_io_floor_map']:.2f}x; {note}"
        ).rstrip("; ")
        lines.append(f"| {name} | {r['mpx_per_s']:.3f} | {r['peak_rss_mb']:.0f} | {note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        print(json.dumps(_child(argv[1], argv[2], argv[3], int(argv[4]))))
        return 0
    p = argparse.ArgumentParser(prog="landcover bench baselines", description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=4096, help="raster side in pixels (default 4096)")
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"JSON report (default {DEFAULT_OUT.relative_to(REPO)})"
    )
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated baselines to run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--svm-train", type=int, default=10000, help="SVM training pixels (sets its support vectors)")
    p.add_argument("--rf-trees", type=int, default=100)
    p.add_argument("--n-train", type=int, default=20000, help="training pixels for the other baselines")
    p.add_argument("--sk-pixels", type=int, default=200_000, help="pixels for the SVC.predict comparison")
    p.add_argument("--window-size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3, help="interleaved SVC.predict / fast-path timings (medians)")
    p.add_argument("--map-repeats", type=int, default=1, help="interleaved mappings of every model (medians)")
    p.add_argument("--workdir", type=Path, default=None, help="where the temporary raster goes")
    a = p.parse_args(argv)
    models = tuple(m.strip() for m in a.models.split(",") if m.strip())
    bad = [m for m in models if m not in MODELS]
    if bad or a.size < 16:
        p.error(f"unknown model {bad[0]!r}" if bad else "--size must be at least 16")
    report = run_bench(
        a.out,
        size=a.size,
        models=models,
        seed=a.seed,
        svm_train=a.svm_train,
        rf_trees=a.rf_trees,
        n_train=a.n_train,
        sk_pixels=a.sk_pixels,
        window_size=a.window_size,
        workdir=a.workdir,
        repeats=a.repeats,
        map_repeats=a.map_repeats,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(table(report))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

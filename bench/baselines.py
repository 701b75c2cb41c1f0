"""Benchmark: full-map prediction speed and memory of the classical baselines.

``landcover bench baselines`` (or ``python -m bench.baselines``):

1. writes a synthetic ``size x size x 6`` uint16 GeoTIFF (tiled 512, DEFLATE) in a
   temporary folder, window by window (memory-bounded), with spatially structured
   classes (smooth random fields, six classes with overlapping spectra, within-class
   texture and noise, a nodata corner), and keeps a sample of labelled pixels;
2. fits each baseline (band values as features) on that sample: the SVM on
   ``svm_train`` pixels so that it keeps thousands of support vectors;
3. maps the raster with :func:`pipeline.mapping.classify.classify_raster`, each model in a
   fresh subprocess so that ``peak_rss_mb`` (``VmHWM`` of that process) is the
   model's own peak; the I/O floor is the same mapping with a model that returns
   zeros (read + write only);
4. for the SVM, measures ``SVC.predict`` and the fast path (:class:`pipeline.models.svm_fast.FastSVC`)
   on the same ``sk_pixels`` pixels of the raster in the same run:
   ``speedup_vs_sklearn`` = fast / sklearn pixel rate (both on in-memory features, both
   on this machine: sklearn's libsvm uses one core, the fast path all cores), and
   ``label_agreement`` = share of identical labels. ``map_speedup_vs_sklearn`` also
   compares the full mapping rate (with I/O) to ``SVC.predict``;
5. for the random forest and the decision tree, measures scikit-learn (``predict_proba``, the
   forest with its ``n_jobs``) against the compiled path the mapping uses
   (:mod:`pipeline.models.tree_infer`) on the same pixels, interleaved, with the label agreement
   and the forest's largest confidence difference; every model's mapping time is also given
   over the I/O floor's (``seconds_over_io_floor``, medians and per repeat) and over a second
   floor that writes a real map (``io_floor_map``: labels from one band cut at fixed values,
   :class:`BandThresholdModel`), because compressing real labels costs far more than zeros;
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

from pipeline.core.atomic import write_json

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "reports" / "bench" / "baselines.json"
MODELS = ("decision_tree", "random_forest", "svm", "max_likelihood")
BANDS = ["blue", "green", "red", "nir", "swir1", "swir2"]
CLASSES = ["water", "forest", "crop", "grass", "urban", "bare"]
CLASS_IDS = [1, 2, 3, 4, 5, 6]
COLORS = ["#1f78b4", "#33a02c", "#b2df8a", "#ffff99", "#e31a1c", "#b15928"]
# Mean reflectance (x 10000) per class and band.
SPECTRA = np.array(
    [
        [600, 700, 500, 300, 150, 100],
        [300, 500, 300, 3000, 1500, 700],
        [450, 750, 550, 3600, 2100, 1100],
        [500, 800, 700, 2900, 2300, 1400],
        [1000, 1100, 1200, 1900, 2200, 2000],
        [1100, 1300, 1500, 2200, 2700, 2400],
    ],
    dtype=np.float64,
)
NODATA = 0
TEXTURE = 0.15  # relative amplitude of the within-class texture
NOISE = 0.22  # relative per-pixel noise (classes overlap: the SVM keeps thousands of support vectors)
TILE = 512


# -- synthetic scene ---------------------------------------------------------------------------
class _Scene:
    """Deterministic class and reflectance fields, evaluated window by window."""

    def __init__(self, seed: int = 0, n_waves: int = 6):
        rng = np.random.default_rng(seed)
        nc = len(CLASSES)
        # class "suitability" fields: sums of plane waves with wavelengths 150-900 px
        self.kc = rng.uniform(2 * np.pi / 900, 2 * np.pi / 150, size=(nc, n_waves))
        self.ang = rng.uniform(0, np.pi, size=(nc, n_waves))
        self.ph = rng.uniform(0, 2 * np.pi, size=(nc, n_waves))
        # per-band texture field (shared by all classes), wavelengths 20-80 px
        self.kt = rng.uniform(2 * np.pi / 80, 2 * np.pi / 20, size=(len(BANDS), 3))
        self.at = rng.uniform(0, np.pi, size=(len(BANDS), 3))
        self.pt = rng.uniform(0, 2 * np.pi, size=(len(BANDS), 3))
        self.seed = seed

    @staticmethod
    def _waves(r, c, k, a, p):
        out = 0.0
        for i in range(len(k)):
            out = out + np.sin(k[i] * (np.cos(a[i]) * c + np.sin(a[i]) * r) + p[i])
        return out

    def window(self, row0: int, col0: int, h: int, w: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(classes int (h, w), values uint16 (6, h, w)) for the window at (row0, col0)."""
        r = np.arange(row0, row0 + h, dtype=np.float32)[:, None]
        c = np.arange(col0, col0 + w, dtype=np.float32)[None, :]
        fields = np.stack([self._waves(r, c, self.kc[i], self.ang[i], self.ph[i]) for i in range(len(CLASSES))])
        cls = np.argmax(fields, axis=0)
        rng = np.random.default_rng([self.seed, row0, col0])
        vals = np.empty((len(BANDS), h, w), dtype=np.uint16)
        for b in range(len(BANDS)):
            tex = self._waves(r, c, self.kt[b], self.at[b], self.pt[b]) / 3.0  # in [-1, 1]
            v = SPECTRA[cls, b] * (1.0 + TEXTURE * tex + NOISE * rng.standard_normal((h, w)))
            vals[b] = np.clip(v, 1, 65535).astype(np.uint16)
        # nodata corner triangle
        nod = (r + c) < size * 0.03
        vals[:, nod] = NODATA
        return cls, vals


def make_scene(path: Path, size: int, seed: int = 0, n_sample: int = 26000) -> dict[str, np.ndarray]:
    """Write the synthetic raster; returns about ``n_sample`` labelled pixels {X (n, 6) float32, y, groups, xy}."""
    import rasterio
    from rasterio.transform import from_origin

    scene = _Scene(seed)
    rng = np.random.default_rng(seed + 1)
    tile = min(TILE, max(16, size))
    tile = tile - tile % 16 or 16
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=len(BANDS),
        dtype="uint16",
        crs="EPSG:32633",
        transform=from_origin(500000.0, 4000000.0, 10.0, 10.0),
        nodata=NODATA,
        tiled=True,
        blockxsize=tile,
        blockysize=tile,
        compress="deflate",
        predictor=2,
    )
    n_windows = (-(-size // tile)) ** 2
    sample_per_window = -(-n_sample // n_windows)
    Xs, ys, gs, xys = [], [], [], []
    with rasterio.open(path, "w", **profile) as dst:
        dst.descriptions = tuple(BANDS)
        g = 0
        for r0 in range(0, size, tile):
            for c0 in range(0, size, tile):
                h, w = min(tile, size - r0), min(tile, size - c0)
                cls, vals = scene.window(r0, c0, h, w, size)
                dst.write(vals, window=rasterio.windows.Window(c0, r0, w, h))
                n = min(sample_per_window, h * w)
                flat = rng.choice(h * w, size=n, replace=False)
                ok = vals.reshape(len(BANDS), -1)[0, flat] != NODATA
                flat = flat[ok]
                Xs.append(vals.reshape(len(BANDS), -1)[:, flat].T.astype(np.float32))
                ys.append(np.asarray(CLASS_IDS)[cls.ravel()[flat]])
                gs.append(np.full(len(flat), g))
                xys.append(np.stack([c0 + flat % w, r0 + flat // w], axis=1).astype(np.float64))
                g += 1
    return {
        "X": np.concatenate(Xs),
        "y": np.concatenate(ys).astype(np.int64),
        "groups": np.concatenate(gs).astype(np.int64),
        "xy": np.concatenate(xys),
    }


# -- models ------------------------------------------------------------------------------------
def _meta(name: str):
    from pipeline.models.base import ModelMeta

    return ModelMeta(
        model=name,
        band_names=list(BANDS),
        class_ids=list(CLASS_IDS),
        class_names=list(CLASSES),
        class_colors=list(COLORS),
        patch_size=1,
    )


class ZeroModel:
    """Returns class 0 everywhere: mapping with it measures read + write only (the I/O floor)."""

    name = "io_floor"
    halo = 0

    def __init__(self, meta: Any):
        self.meta = meta

    def predict_block(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(block.shape[1:], np.int64), np.ones(block.shape[1:], np.float32)


class BandThresholdModel(ZeroModel):
    """Labels from one band cut at fixed values (``np.digitize`` of the NIR band): next to no
    computation, but a map with the scene's own structure, so that mapping with it measures
    read + write of a *real* class map (``io_floor_map``). Writing and compressing a map of
    zeros (the I/O floor) costs far less than writing one of real labels."""

    name = "io_floor_map"

    def __init__(self, meta: Any, band: int = BANDS.index("nir"), means: np.ndarray | None = None):
        """``means``: each class's mean value of band ``band`` (default: the scene's NIR)."""
        super().__init__(meta)
        means = SPECTRA[:, band] if means is None else np.asarray(means, dtype=np.float64)
        order = np.argsort(means)
        self.band = band
        self.cuts = (means[order][1:] + means[order][:-1]) / 2
        self.ids = np.asarray(CLASS_IDS)[order]

    def predict_block(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.ids[np.digitize(block[self.band], self.cuts)], np.ones(block.shape[1:], np.float32)


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
    from pipeline.models.settings import DecisionTreeConfig, MaxLikelihoodConfig, RandomForestConfig, SVMConfig

    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(sample["y"]))[:n_train]
    train = TrainingData(
        sample["X"][idx][:, :, None, None], sample["y"][idx], sample["groups"][idx], sample["xy"][idx], list(BANDS)
    )
    settings = {
        "decision_tree": DecisionTreeConfig(),
        "random_forest": RandomForestConfig(n_estimators=rf_trees, n_jobs=2),
        "svm": SVMConfig(C=[10.0], gamma=["scale"], max_train_samples=max(10, svm_train)),
        "max_likelihood": MaxLikelihoodConfig(),
    }
    out = {}
    for name in models:
        model = build_model(name, settings[name], _meta(name), seed=seed)
        t0 = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - t0
        path = model.save(workdir / f"{name}.skops")
        out[name] = {"path": str(path), "fit_seconds": round(fit_s, 2), "fit_info": model.fit_info}
    return out


# -- child process: map once, report speed and peak memory -------------------------------------
def _child(model_path: str, raster: str, out_tif: str, window_size: int) -> dict:
    from pipeline.inputs.raster import RasterStack
    from pipeline.mapping.classify import classify_raster

    warm = 0.0
    if model_path in ("io_floor", "io_floor_map"):
        model: Any = (ZeroModel if model_path == "io_floor" else BandThresholdModel)(_meta("decision_tree"))
    else:
        from pipeline.models import load_model

        model = load_model(model_path)
        if model.name in ("decision_tree", "random_forest"):  # untimed, reported: the compiled kernels' loading
            from pipeline.models.tree_infer import warm_up

            t0 = time.perf_counter()
            warm_up()
            warm = time.perf_counter() - t0
    with RasterStack.open(raster) as stack:
        res = classify_raster(model, stack, Path(out_tif), window_size=window_size, progress=False)
    from bench.procstat import peak_rss_mb

    return {
        "mpx_per_s": res["mpx_per_s"],
        "seconds": res["seconds"],
        "pixels": res["pixels"],
        "peak_rss_mb": peak_rss_mb(),
        "kernel_load_seconds": warm,
    }


def _run_child(model_path: str, raster: Path, out_tif: Path, window_size: int) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "bench.baselines", "--child", model_path, str(raster), str(out_tif), str(window_size)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child for {model_path} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- SVM vs sklearn on the same pixels ---------------------------------------------------------
def svm_vs_sklearn(model_path: Path, raster: Path, n_pixels: int, repeats: int = 3) -> dict:
    """``SVC.predict`` against the fast path on the same pixels, ``repeats`` times interleaved
    (the order alternates), so that load from other processes hits both alike; rates and the
    speed-up are medians, the speed-up of each repeat from its own pair of timings."""
    from rasterio.windows import Window

    from pipeline.inputs.raster import RasterStack
    from pipeline.models import load_model

    model = load_model(model_path)
    with RasterStack.open(raster) as stack:
        size = stack.grid.width
        rows = max(1, min(stack.grid.height, -(-n_pixels // size)))
        r0 = (stack.grid.height - rows) // 2
        block = stack.read(Window(0, r0, size, rows))
    X = model.features_from_block(block)
    X = X[np.all(np.isfinite(block.reshape(block.shape[0], -1)), axis=0)][:n_pixels]
    Xs = model._scaled(X)
    model.fast.predict(Xs[:2048])  # warm-up (thread pool, BLAS)
    t_sk, t_fast = [], []
    ref = fast = None
    for r in range(max(1, repeats)):
        for which in ("sk", "fast") if r % 2 == 0 else ("fast", "sk"):
            t0 = time.perf_counter()
            if which == "sk":
                ref = model.estimator.predict(Xs)
                t_sk.append(time.perf_counter() - t0)
            else:
                fast, _ = model.fast.predict_with_confidence(Xs)
                t_fast.append(time.perf_counter() - t0)
    return {
        **_against_sklearn(len(X), t_sk, t_fast, fast, ref),
        "n_support_vectors": int(len(model.estimator.support_vectors_)),
    }


def _against_sklearn(n: int, t_sk: list[float], t_fast: list[float], fast: Any, ref: Any) -> dict[str, Any]:
    """Speed and agreement of a fast path against scikit-learn on the same ``n`` pixels: medians of
    the interleaved repeats' times, and the median of each repeat's own ratio."""
    ratios = [a / b for a, b in zip(t_sk, t_fast)]
    return {
        "n_pixels_compared": int(n),
        "repeats": len(t_sk),
        "sklearn_mpx_per_s": n / 1e6 / float(np.median(t_sk)),
        "fast_mpx_per_s": n / 1e6 / float(np.median(t_fast)),
        "speedup_vs_sklearn": float(np.median(ratios)),
        "speedup_per_repeat": ratios,
        "sklearn_seconds_all": t_sk,
        "fast_seconds_all": t_fast,
        "label_agreement": float(np.mean(fast == ref)),
        "n_label_differences": int(np.sum(fast != ref)),
    }


# -- tree models vs sklearn on the same pixels -------------------------------------------------
def trees_vs_sklearn(model_path: Path, raster: Path, n_pixels: int, repeats: int = 3) -> dict:
    """The random forest's ``predict_proba`` (or the decision tree's ``predict``), as fitted
    (the forest with its ``n_jobs``), against the compiled path the mapping uses
    (:mod:`pipeline.models.tree_infer`) on the same pixels, ``repeats`` times interleaved in
    alternating order; the speed-up is the median of each repeat's own ratio. Labels are compared
    with sklearn's (``classes_[argmax(predict_proba)]``, i.e. ``predict``), the forest's
    confidence with ``predict_proba``'s row maximum."""
    from rasterio.windows import Window

    from pipeline.inputs.raster import RasterStack
    from pipeline.models import load_model

    model = load_model(model_path)
    est = model.estimator
    forest = hasattr(est, "estimators_")
    with RasterStack.open(raster) as stack:
        size = stack.grid.width
        rows = max(1, min(stack.grid.height, -(-n_pixels // size)))
        r0 = (stack.grid.height - rows) // 2
        block = stack.read(Window(0, r0, size, rows))
    X = model.features_from_block(block)
    X = X[np.all(np.isfinite(block.reshape(block.shape[0], -1)), axis=0)][:n_pixels]
    model._predict_features(X[:2048])  # warm-up: compiled kernels loaded, trees packed
    t_sk, t_fast = [], []
    ref = fast = conf = proba = None
    for r in range(max(1, repeats)):
        for which in ("sk", "fast") if r % 2 == 0 else ("fast", "sk"):
            t0 = time.perf_counter()
            if which == "sk":
                proba = est.predict_proba(X)
                t_sk.append(time.perf_counter() - t0)
            else:
                fast, conf = model._predict_features(X)
                t_fast.append(time.perf_counter() - t0)
    assert proba is not None and fast is not None and conf is not None
    ref = np.asarray(est.classes_)[np.argmax(proba, axis=1)]
    out = {
        "reference": "RandomForestClassifier.predict_proba" if forest else "DecisionTreeClassifier.predict_proba",
        **_against_sklearn(len(X), t_sk, t_fast, fast, ref),
        "trees": len(est.estimators_) if forest else 1,
        "mean_nodes_per_tree": float(np.mean([e.tree_.node_count for e in getattr(est, "estimators_", [est])])),
        "max_depth": int(max(e.tree_.max_depth for e in getattr(est, "estimators_", [est]))),
    }
    if forest:
        out["n_jobs"] = int(est.n_jobs or 1)
        # the model's confidence is float32: compare in float64 before that rounding too
        idx, conf64 = model._packed_trees.proba_argmax(X, n_threads=out["n_jobs"])
        out["max_confidence_diff"] = float(np.max(np.abs(conf64 - proba.max(axis=1))))
    return out


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
        floors = ("io_floor", "io_floor_map")
        runs: dict[str, list[dict]] = {name: [] for name in (*floors, *models)}
        for rep in range(max(1, map_repeats)):  # interleaved: every mapping once, then again
            for name in runs:
                path = name if name in floors else fitted[name]["path"]
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
        for name in ("random_forest", "decision_tree"):
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
            results[name]["seconds_over_io_floor_map"] = results[name]["seconds"] / io_map["seconds"]
            results[name]["seconds_over_io_floor_map_per_repeat"] = [
                a / b for a, b in zip(results[name]["seconds_all"], io_map["seconds_all"])
            ]
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
        "io_floor_map_mpx_per_s": io_map["mpx_per_s"],
        "io_floor_map_peak_rss_mb": io_map["peak_rss_mb"],
        "io_floor_map_seconds": io_map["seconds"],
        "io_floor_map_seconds_all": io_map["seconds_all"],
        "models": results,
    }
    write_json(out_json, report)  # atomic; NaN -> null
    return report


def table(report: dict) -> str:
    """Markdown table of a report (the README's performance section)."""
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
            f"(zeros / real map); {note}"
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

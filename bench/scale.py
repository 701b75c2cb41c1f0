"""Benchmark: how mapping time and peak memory grow with raster size and band count.

``landcover bench scale`` (or ``python -m bench.scale``) measures points along
*axes*, one table entry per axis (:data:`AXES`):

* ``size``: square rasters of 1024-8192 px, 6 bands, every model (slow models stop at a
  smaller size, :data:`MAX_SIZE`); the growth exponent is fitted against the pixel count;
* ``bands``: a 1024 x 1024 raster with 6, 50 and 200 bands (pixel-interleaved, as
  hyperspectral products often are), the I/O floor and the decision tree; the exponent is
  fitted against the band count.

Each point (axis value x model) runs in its own subprocess, so that its ``peak_rss_mb``
(``VmHWM``, see :mod:`bench.procstat`) is its own, and its ``seconds`` cover what ``landcover map`` does for the
user: load the model, classify window by window, convert to a Cloud-Optimized GeoTIFF
(the interpreter start-up and imports are left out). Rasters and models are made once,
before any timing. The points are run ``repeats`` times, interleaved (every point once,
then every point again, in a rotated order), so that load from other processes on a shared
machine spreads over all of them; the report keeps every repeat and their medians.

For every axis and model the report gives the growth exponent of time and of peak RSS
(the slope of log(median) against log(x), by least squares), the ratio of the last point
to the first per unit of x (``seconds_per_x_ratio``: 1.0 means linear growth) and of peak
RSS (``peak_rss_ratio``), and for the ``size`` axis the time and memory projected from the
fit to one 10980 x 10980 Sentinel-2 tile.

Adding an axis is one :class:`Axis` in :data:`AXES`: its values, models, what x is, and a
``setup`` function that writes the inputs of each point and returns the child jobs
(:data:`JOBS` names what a child process can run).
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.atomic import write_json

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "reports" / "bench" / "scale.json"
S2_TILE = 10980  # pixels on a side of one Sentinel-2 tile at 10 m
MODELS = ("io_floor", "io_floor_map", "decision_tree", "random_forest", "svm", "max_likelihood", "cnn", "resnet")
# Largest raster side each model is mapped at (the slow ones would take minutes per repeat at
# 8192^2; their growth exponent comes from the smaller sizes).
MAX_SIZE = {
    "io_floor": 8192,
    "io_floor_map": 8192,
    "decision_tree": 8192,
    "max_likelihood": 4096,
    "random_forest": 2048,
    "svm": 2048,
    "cnn": 2048,
    "resnet": 2048,
}
# Mappings without a model: read + write a map of zeros, and of real labels (one band cut at
# fixed values: compressing a real class map, and its COG, costs far more than zeros).
FLOORS = ("io_floor", "io_floor_map")
TILE = 512
NODATA = 0
PATCH = 9  # patch size of the deep models (the config default)


# -- settings ----------------------------------------------------------------------------------
@dataclass
class Settings:
    """Everything a run of the benchmark depends on (the CLI fills it; tests shrink it)."""

    sizes: tuple[int, ...] = (1024, 2048, 4096, 8192)
    bands: tuple[int, ...] = (6, 50, 200)
    bands_size: int = 1024
    size_models: tuple[str, ...] = MODELS
    bands_models: tuple[str, ...] = ("io_floor", "decision_tree")
    max_size: dict[str, int] = field(default_factory=lambda: dict(MAX_SIZE))
    axes: tuple[str, ...] = ("size", "bands")
    repeats: int = 3
    window_size: int = 512
    seed: int = 0
    n_train: int = 20000
    rf_trees: int = 100
    svm_train: int = 5000
    deep_epochs: int = 1
    deep_channels: int = 64
    patch_size: int = PATCH
    n_train_deep: int = 4000  # the deep models train one epoch on this many patches
    labelled: tuple[int, ...] = (10_000, 100_000, 1_000_000, 4_000_000)  # labelled-pixels axis: whole runs
    labelled_models: tuple[str, ...] = ("decision_tree", "cnn")
    labelled_epochs: int = 2  # deep models of the labelled axis
    labelled_random_contrast: bool = True  # split.random_contrast of the labelled runs (False: one fit per model)
    dask_workers: tuple[int, ...] = (1, 2)  # workers axis: one raster's windows on a local Dask cluster
    workers_size: int = 1024
    workers_model: str = "random_forest"  # fitted with n_jobs=1: the cluster is the only parallelism
    argv: tuple[str, ...] = ()  # the command line, recorded in the report


# -- synthetic rasters -------------------------------------------------------------------------
def band_names(n: int) -> list[str]:
    return [f"b{i:03d}" for i in range(1, n + 1)]


def _spectra(n_bands: int) -> np.ndarray:
    """(classes, n_bands) mean reflectance: the baselines' 6-band spectra, interpolated across
    ``n_bands`` (smooth spectra, as a hyperspectral sensor sees them)."""
    from bench.baselines import SPECTRA

    pos = np.linspace(0, SPECTRA.shape[1] - 1, n_bands)
    return np.stack([np.interp(pos, np.arange(SPECTRA.shape[1]), s) for s in SPECTRA])


def write_raster(
    path: Path, size: int, n_bands: int, seed: int = 0, n_sample: int = 0, patch: int = 1
) -> dict[str, np.ndarray]:
    """Write a ``size x size x n_bands`` uint16 GeoTIFF (tiled 512, DEFLATE, pixel-interleaved)
    window by window, with the classes of :class:`bench.baselines._Scene` (evaluated on a grid
    8x coarser, which keeps their 150-900 px structure and makes an 8192^2 raster cheap).

    Returns about ``n_sample`` labelled pixels: ``X`` (n, bands) float32, ``patches``
    (n, bands, patch, patch) float32, ``y``, ``groups`` (one per window), ``xy``.
    """
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from bench.baselines import CLASS_IDS, NOISE, _Scene

    scene = _Scene(seed)
    spectra = _spectra(n_bands).astype(np.float32)
    rng = np.random.default_rng([seed, size, n_bands])
    tile = min(TILE, max(16, size - size % 16))
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=n_bands,
        dtype="uint16",
        crs="EPSG:32633",
        transform=from_origin(500000.0, 4000000.0, 10.0, 10.0),
        nodata=NODATA,
        tiled=True,
        blockxsize=tile,
        blockysize=tile,
        compress="deflate",
        predictor=2,
        interleave="pixel",
        BIGTIFF="IF_SAFER",
    )
    n_windows = (-(-size // tile)) ** 2
    per_window = -(-n_sample // n_windows) if n_sample else 0
    h_p = patch // 2
    X, P, ys, gs, xy = [], [], [], [], []
    step = 8
    with rasterio.open(path, "w", **profile) as dst:
        dst.descriptions = tuple(band_names(n_bands))
        g = 0
        for r0 in range(0, size, tile):
            for c0 in range(0, size, tile):
                h, w = min(tile, size - r0), min(tile, size - c0)
                r = np.arange(r0, r0 + h, step, dtype=np.float32)[:, None]
                c = np.arange(c0, c0 + w, step, dtype=np.float32)[None, :]
                fields = np.stack(
                    [scene._waves(r, c, scene.kc[i], scene.ang[i], scene.ph[i]) for i in range(len(scene.kc))]
                )
                cls = np.repeat(np.repeat(np.argmax(fields, axis=0), step, 0), step, 1)[:h, :w]
                vals = np.empty((n_bands, h, w), np.uint16)
                for b in range(n_bands):
                    noise = rng.standard_normal((h, w), dtype=np.float32)
                    v = spectra[cls, b] * (1.0 + NOISE * noise)
                    np.clip(v, 1, 65535, out=v)
                    vals[b] = v
                rr, cc = np.mgrid[r0 : r0 + h, c0 : c0 + w]
                vals[:, (rr + cc) < size * 0.03] = NODATA  # a nodata corner
                dst.write(vals, window=Window(c0, r0, w, h))
                if per_window and h > patch and w > patch:
                    n = min(per_window, (h - 2 * h_p) * (w - 2 * h_p))
                    pr = rng.integers(h_p, h - h_p, n)
                    pc = rng.integers(h_p, w - h_p, n)
                    ok = vals[0, pr, pc] != NODATA
                    pr, pc = pr[ok], pc[ok]
                    X.append(vals[:, pr, pc].T.astype(np.float32))
                    if patch > 1:
                        cut = (
                            np.stack([vals[:, a - h_p : a + h_p + 1, b - h_p : b + h_p + 1] for a, b in zip(pr, pc)])
                            if len(pr)
                            else np.empty((0, n_bands, patch, patch), np.uint16)
                        )
                        P.append(cut.astype(np.float32))
                    ys.append(np.asarray(CLASS_IDS)[cls[pr, pc]])
                    gs.append(np.full(len(pr), g))
                    xy.append(np.stack([c0 + pc + 0.5, r0 + pr + 0.5], axis=1).astype(np.float64))
                g += 1
    if not X:
        return {}
    out = {
        "X": np.concatenate(X),
        "y": np.concatenate(ys).astype(np.int64),
        "groups": np.concatenate(gs).astype(np.int64),
        "xy": np.concatenate(xy),
    }
    if P:
        out["patches"] = np.concatenate(P)
    return out


# -- models ------------------------------------------------------------------------------------
def _meta(name: str, n_bands: int, patch: int):
    from bench.baselines import CLASS_IDS, CLASSES, COLORS
    from pipeline.models.base import ModelMeta

    return ModelMeta(
        model=name,
        band_names=band_names(n_bands),
        class_ids=list(CLASS_IDS),
        class_names=list(CLASSES),
        class_colors=list(COLORS),
        patch_size=patch,
    )


def fit_model(
    name: str, sample: dict[str, np.ndarray], workdir: Path, s: Settings, n_jobs: int = 2, tag: str = ""
) -> str:
    """Fit ``name`` on the sample and save it under ``workdir``; returns the path
    (``"io_floor"`` / ``"io_floor_map"`` for the mappings with no model)."""
    if name in FLOORS:
        return name
    from pipeline.models import build_model, model_suffix
    from pipeline.models.base import TrainingData
    from pipeline.models.settings import (
        CNNConfig,
        DecisionTreeConfig,
        MaxLikelihoodConfig,
        RandomForestConfig,
        ResNetConfig,
        SVMConfig,
    )

    n_bands = sample["X"].shape[1]
    deep = name in ("cnn", "resnet")
    settings = {
        "decision_tree": lambda: DecisionTreeConfig(),
        "random_forest": lambda: RandomForestConfig(n_estimators=s.rf_trees, n_jobs=n_jobs),
        "svm": lambda: SVMConfig(C=[10.0], gamma=["scale"], max_train_samples=max(10, s.svm_train)),
        "max_likelihood": lambda: MaxLikelihoodConfig(),
        "cnn": lambda: CNNConfig(epochs=s.deep_epochs, channels=s.deep_channels),
        "resnet": lambda: ResNetConfig(epochs=s.deep_epochs, channels=s.deep_channels),
    }[name]()
    idx = np.random.default_rng(s.seed).permutation(len(sample["y"]))[: s.n_train_deep if deep else s.n_train]
    patches = sample["patches"][idx] if deep else sample["X"][idx][:, :, None, None]
    train = TrainingData(patches, sample["y"][idx], sample["groups"][idx], sample["xy"][idx], band_names(n_bands))
    model = build_model(name, settings, _meta(name, n_bands, s.patch_size if deep else 1), seed=s.seed)
    if deep:
        model.progress = False
    model.fit(train)
    return str(model.save(workdir / f"{name}-{n_bands}b{model_suffix(name)}"))


# -- child process: one point ------------------------------------------------------------------
def job_map(model: str, raster: str, out: str, window_size: int) -> dict[str, Any]:
    """Map ``raster`` as ``landcover map`` does (load, classify, COG) and time it."""
    from bench.baselines import ZeroModel
    from bench.procstat import rss_mb
    from pipeline.mapping.classify import classify_raster, open_for_model
    from pipeline.models import load_model

    if model in FLOORS:
        import rasterio

        from bench.baselines import BandThresholdModel

        with rasterio.open(raster) as ds:
            n = ds.count
        if model == "io_floor":
            m: Any = ZeroModel(_meta("decision_tree", n, 1))
        else:  # a real class map from one band cut at fixed values: read + write of a real map
            band = round(3 * (n - 1) / 5)  # the baselines' NIR, where the spectra are interpolated
            m = BandThresholdModel(_meta("decision_tree", n, 1), band=band, means=_spectra(n)[:, band])
    else:
        if load_model(model).name in ("decision_tree", "random_forest"):  # untimed: imports the model's libraries
            from pipeline.models.tree_infer import warm_up  # (torch, scikit-learn; Numba and its compiled kernels)

            warm_up()
    rss0 = rss_mb()
    t0 = time.perf_counter()
    if model not in FLOORS:
        m = load_model(model)
    with open_for_model(Path(raster), list(m.meta.band_names)) as stack:
        res = classify_raster(m, stack, Path(out), window_size=window_size, progress=False)
    seconds = time.perf_counter() - t0
    Path(out).unlink(missing_ok=True)
    return {"seconds": seconds, "map_seconds": res["seconds"], "pixels": res["pixels"], "rss_before_mb": rss0}


def job_map_dask(model: str, raster: str, out: str, window_size: int, n_workers: int) -> dict[str, Any]:
    """Map ``raster`` with its windows as tasks on a local Dask cluster of ``n_workers`` worker
    processes (one thread each), started before the clock (their memory is not in this
    process's peak RSS)."""
    import distributed

    from bench.procstat import rss_mb
    from pipeline.mapping.classify import classify_raster, open_for_model
    from pipeline.models import load_model

    with (
        distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0", memory_limit="4GiB"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.wait_for_workers(n_workers)
        m = load_model(model)
        rss0 = rss_mb()
        t0 = time.perf_counter()
        with open_for_model(Path(raster), list(m.meta.band_names)) as stack:
            res = classify_raster(m, stack, Path(out), window_size=window_size, progress=False, client=client)
        seconds = time.perf_counter() - t0
    Path(out).unlink(missing_ok=True)
    return {
        "seconds": seconds,
        "map_seconds": res["seconds"],
        "pixels": res["pixels"],
        "rss_before_mb": rss0,
        "windows_per_worker": sorted(res["workers"].values()),
    }


def job_run(**kw: Any) -> dict[str, Any]:
    """A whole ``landcover run`` (see :func:`bench.scale_mem.job_run`)."""
    from bench.scale_mem import job_run as run

    return run(**kw)


JOBS: dict[str, Callable[..., dict[str, Any]]] = {"map": job_map, "map_dask": job_map_dask, "run": job_run}


def _child(job: dict[str, Any]) -> dict[str, Any]:
    from bench.procstat import peak_rss_mb

    res = JOBS[job["kind"]](**job["args"])
    res["peak_rss_mb"] = peak_rss_mb()
    return res


def run_child(job: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--child", json.dumps(job)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {job} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- axes --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Axis:
    """One line of growth: ``values`` of a quantity, the ``models`` measured at each, how the
    value maps to the x of the fit (``x``), and ``setup(axis, settings, workdir, log)`` which
    writes the inputs (untimed) and returns ``{(value, model): child job}``."""

    name: str
    x_label: str
    x: Callable[[int], float]
    setup: Callable[[Axis, Settings, Path, Callable], dict[tuple[int, str], dict]]
    project_to: int | None = None  # a value to project time and memory to (from the fit)


def _setup_size(axis: Axis, s: Settings, workdir: Path, log: Callable) -> dict[tuple[int, str], dict]:
    jobs = {}
    models = list(s.size_models)
    sample: dict[str, np.ndarray] = {}
    for size in sorted(s.sizes):
        path = workdir / f"size{size}.tif"
        t0 = time.perf_counter()
        smp = write_raster(
            path, size, 6, seed=s.seed, n_sample=0 if sample else int(1.3 * s.n_train), patch=s.patch_size
        )
        log(f"raster {size} x {size} x 6 written in {time.perf_counter() - t0:.1f} s")
        sample = sample or smp
        for m in models:
            if size <= s.max_size.get(m, max(s.sizes)):
                jobs[(size, m)] = {
                    "kind": "map",
                    "args": {
                        "model": m,
                        "raster": str(path),
                        "out": str(workdir / f"out-size{size}-{m}.tif"),
                        "window_size": s.window_size,
                    },
                }
    fitted = {}
    for m in models:
        t0 = time.perf_counter()
        fitted[m] = fit_model(m, sample, workdir, s)
        log(f"fit {m} (6 bands) in {time.perf_counter() - t0:.1f} s")
    for (_, m), job in jobs.items():
        job["args"]["model"] = fitted[m]
    return jobs


def _setup_bands(axis: Axis, s: Settings, workdir: Path, log: Callable) -> dict[tuple[int, str], dict]:
    jobs = {}
    for nb in sorted(s.bands):
        path = workdir / f"bands{nb}.tif"
        t0 = time.perf_counter()
        smp = write_raster(path, s.bands_size, nb, seed=s.seed, n_sample=int(1.3 * s.n_train))
        log(f"raster {s.bands_size} x {s.bands_size} x {nb} written in {time.perf_counter() - t0:.1f} s")
        for m in s.bands_models:
            jobs[(nb, m)] = {
                "kind": "map",
                "args": {
                    "model": fit_model(m, smp, workdir, s),
                    "raster": str(path),
                    "out": str(workdir / f"out-bands{nb}-{m}.tif"),
                    "window_size": s.window_size,
                },
            }
    return jobs


def _setup_labelled(axis: Axis, s: Settings, workdir: Path, log: Callable) -> dict[tuple[int, str], dict]:
    from bench.scale_mem import setup_labelled

    return setup_labelled(axis, s, workdir, log)


def _setup_workers(axis: Axis, s: Settings, workdir: Path, log: Callable) -> dict[tuple[int, str], dict]:
    path = workdir / f"workers{s.workers_size}.tif"
    smp = write_raster(path, s.workers_size, 6, seed=s.seed, n_sample=int(1.3 * s.n_train), patch=s.patch_size)
    log(f"raster {s.workers_size} x {s.workers_size} x 6 written (workers axis)")
    model = fit_model(s.workers_model, smp, workdir, s, n_jobs=1, tag="-1job")
    return {
        (n, s.workers_model): {
            "kind": "map_dask",
            "args": {
                "model": model,
                "raster": str(path),
                "out": str(workdir / f"out-workers{n}.tif"),
                "window_size": s.window_size,
                "n_workers": n,
            },
        }
        for n in sorted(s.dask_workers)
    }


def _axis_values(name: str, s: Settings) -> tuple[int, ...]:
    return {"size": s.sizes, "bands": s.bands, "labelled": s.labelled, "workers": s.dask_workers}[name]


AXES: dict[str, Axis] = {
    "size": Axis("size", "pixels (size^2)", lambda v: float(v) * float(v), _setup_size, project_to=S2_TILE),
    "bands": Axis("bands", "bands", float, _setup_bands),
    # Whole runs (prepare, train, map, assess, report) on fully labelled scenes, sampling at its
    # defaults; slow (minutes per point above 1M), so not in the default axes.
    "labelled": Axis("labelled", "labelled pixels", float, _setup_labelled),
    # One raster's windows as tasks on a local Dask cluster of 1, 2, ... worker processes;
    # seconds_ratio (first over last) is the speed-up of the most workers over one.
    "workers": Axis("workers", "Dask workers", float, _setup_workers),
}


# -- analysis ----------------------------------------------------------------------------------
def loglog_fit(x: list[float], y: list[float]) -> dict[str, float] | None:
    """Least-squares line through (log x, log y): ``{"exponent", "log_intercept"}``; None with
    fewer than two distinct x."""
    x_, y_ = np.asarray(x, float), np.asarray(y, float)
    ok = (x_ > 0) & (y_ > 0) & np.isfinite(y_)
    if len(np.unique(x_[ok])) < 2:
        return None
    slope, icpt = np.polyfit(np.log(x_[ok]), np.log(y_[ok]), 1)
    return {"exponent": float(slope), "log_intercept": float(icpt)}


RUN_FACTS = ("returncode", "labelled_pixels", "sampling", "patch_store_mb", "failed_models", "stages")


def summarise(axis: Axis, points: dict[tuple[int, str], list[dict]]) -> dict[str, Any]:
    """Per model: the medians of every point, the fitted exponents, ratios and projections."""
    out: dict[str, Any] = {}
    for m in dict.fromkeys(m for _, m in points):
        vals = sorted(v for v, mm in points if mm == m)
        rows = []
        for v in vals:
            reps = points[(v, m)]
            sec = float(np.median([r["seconds"] for r in reps]))
            rss = float(np.median([r["peak_rss_mb"] for r in reps]))
            rows.append(
                {
                    "value": v,
                    "x": axis.x(v),
                    "seconds": sec,
                    "peak_rss_mb": rss,
                    "seconds_per_x": sec / axis.x(v),
                    "rss_before_mb": float(np.median([r.get("rss_before_mb", np.nan) for r in reps])),
                    "seconds_all": [r["seconds"] for r in reps],
                    **(
                        {"windows_per_worker": reps[-1]["windows_per_worker"]}
                        if "windows_per_worker" in reps[-1]
                        else {}
                    ),
                    "peak_rss_mb_all": [r["peak_rss_mb"] for r in reps],
                    # whole-run jobs (labelled axis): what the run kept and whether it succeeded
                    **{k: reps[-1][k] for k in RUN_FACTS if k in reps[-1]},
                }
            )
        xs = [r["x"] for r in rows]
        res: dict[str, Any] = {
            "points": rows,
            "time_fit": loglog_fit(xs, [r["seconds"] for r in rows]),
            "rss_fit": loglog_fit(xs, [r["peak_rss_mb"] for r in rows]),
        }
        if len(rows) >= 2:
            res["seconds_per_x_ratio"] = rows[-1]["seconds_per_x"] / rows[0]["seconds_per_x"]
            res["peak_rss_ratio"] = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
            res["seconds_ratio"] = rows[0]["seconds"] / rows[-1]["seconds"]  # first over last: a speed-up
            res["ratio_between"] = [rows[0]["value"], rows[-1]["value"]]
        if axis.project_to is not None and res["time_fit"] and res["rss_fit"]:
            lx = np.log(axis.x(axis.project_to))
            res["projection"] = {
                "value": axis.project_to,
                "method": "fit",
                "seconds": float(np.exp(res["time_fit"]["log_intercept"] + res["time_fit"]["exponent"] * lx)),
                "peak_rss_mb": float(np.exp(res["rss_fit"]["log_intercept"] + res["rss_fit"]["exponent"] * lx)),
                # Plain per-pixel extrapolation from the largest point, for comparison with the fit.
                "seconds_linear_from_largest": rows[-1]["seconds_per_x"] * axis.x(axis.project_to),
            }
        elif axis.project_to is not None and rows:
            # One size only (a slow model): time linear in x, memory as measured; said so in "method".
            res["projection"] = {
                "value": axis.project_to,
                "method": "linear from one point, memory as measured",
                "seconds": rows[-1]["seconds_per_x"] * axis.x(axis.project_to),
                "peak_rss_mb": rows[-1]["peak_rss_mb"],
                "seconds_linear_from_largest": rows[-1]["seconds_per_x"] * axis.x(axis.project_to),
            }
        out[m] = res
    return out


# -- driver ------------------------------------------------------------------------------------
def run_bench(
    out_json: Path = DEFAULT_OUT,
    settings: Settings | None = None,
    workdir: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Prepare every axis, run every point ``repeats`` times interleaved, write ``out_json``."""
    s = settings or Settings()
    out_json = Path(out_json)
    t_start = time.perf_counter()
    load_before = list(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=workdir) as tmp:
        tmp = Path(tmp)
        jobs: dict[tuple[str, int, str], dict] = {}
        for name in s.axes:
            axis = AXES[name]
            for (v, m), job in axis.setup(axis, s, tmp, log).items():
                jobs[(name, v, m)] = job
        keys = list(jobs)
        results: dict[tuple[str, int, str], list[dict]] = {k: [] for k in keys}
        for rep in range(s.repeats):
            shift = (rep * max(1, len(keys) // max(1, s.repeats))) % max(1, len(keys))
            for k in keys[shift:] + keys[:shift]:  # rotated: no point always runs first or last
                r = run_child(jobs[k])
                r["repeat"] = rep
                results[k].append(r)
                log(
                    f"[{rep + 1}/{s.repeats}] {k[0]}={k[1]} {k[2]}: {r['seconds']:.2f} s, "
                    f"peak {r['peak_rss_mb']:.0f} MB"
                )
    axes_out = {}
    for name in s.axes:
        pts = {(v, m): results[(a, v, m)] for (a, v, m) in keys if a == name}
        axes_out[name] = {
            "x": AXES[name].x_label,
            "values": list(_axis_values(name, s)),
            "models": summarise(AXES[name], pts),
            # Axes are often measured in separate runs (the slow ones alone): each says how and when.
            "command": " ".join(["landcover bench scale", *s.argv]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_average_before": load_before,
            "load_average_after": list(os.getloadavg()),
        }
    kept = _earlier_axes(out_json, exclude=set(axes_out))
    axes_out = {**kept, **axes_out}
    import sklearn

    report = {
        "benchmark": "scale",
        "command": " ".join(["landcover bench scale", *s.argv]),
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.__dict__.items() if k != "argv"},
        "raster": {"dtype": "uint16", "tile": TILE, "compress": "deflate", "predictor": 2, "interleave": "pixel"},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "sklearn": sklearn.__version__,
            "load_average_before": load_before,
            "load_average_after": list(os.getloadavg()),
        },
        "seconds_total": time.perf_counter() - t_start,
        "axes": axes_out,
        "axes_from_earlier_runs": sorted(kept),
        "checks": checks(axes_out),
    }
    write_json(out_json, report)  # atomic; NaN -> null
    return report


def _earlier_axes(out_json: Path, exclude: set[str]) -> dict[str, Any]:
    """The axes of an existing report at ``out_json`` that this run did not measure, so that a
    run of one axis (``--axes labelled``) updates the report instead of dropping the others."""
    try:
        old = json.loads(Path(out_json).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(old, dict) or old.get("benchmark") != "scale":
        return {}
    return {k: v for k, v in (old.get("axes") or {}).items() if k not in exclude and k in AXES}


def checks(axes: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, measured in this run (``None`` where the axis or model was not run):
    peak RSS of the largest over the smallest raster (<= 1.2), time per band of the most over the
    fewest bands (<= 3), the decision tree's time over the I/O floor's at the largest common
    size (<= 1.5), and the speed-up of the most Dask workers over one."""
    out: dict[str, Any] = {}
    size = axes.get("size", {}).get("models", {})
    out["size_peak_rss_ratio"] = {m: r.get("peak_rss_ratio") for m, r in size.items()}
    bands = axes.get("bands", {}).get("models", {})
    out["bands_seconds_per_band_ratio"] = {m: r.get("seconds_per_x_ratio") for m, r in bands.items()}
    if "io_floor" in size and "decision_tree" in size:
        io = {p["value"]: p["seconds"] for p in size["io_floor"]["points"]}
        dt = {p["value"]: p["seconds"] for p in size["decision_tree"]["points"]}
        common = sorted(set(io) & set(dt))
        out["decision_tree_over_io_floor"] = {str(v): dt[v] / io[v] for v in common}
    if "io_floor_map" in size and "decision_tree" in size:
        io = {p["value"]: p["seconds"] for p in size["io_floor_map"]["points"]}
        dt = {p["value"]: p["seconds"] for p in size["decision_tree"]["points"]}
        common = sorted(set(io) & set(dt))
        out["decision_tree_over_io_floor_map"] = {str(v): dt[v] / io[v] for v in common}
    workers = axes.get("workers", {}).get("models", {})
    out["dask_speedup"] = {m: r.get("seconds_ratio") for m, r in workers.items()}
    return out


def _fmt_s(sec: float) -> str:
    return f"{sec / 60:.1f} min" if sec >= 120 else f"{sec:.1f} s"


def table(report: dict[str, Any]) -> str:
    """Markdown tables of a report (the README's scale section)."""
    lines = []
    for name, ax in report["axes"].items():
        vals = ax["values"]
        lines.append(f"**{name}** (exponents fitted against {ax['x']})")
        lines.append("")
        head = "| model | " + " | ".join(f"{v}: s / MB" for v in vals) + " | time exp. | RSS exp. |"
        if name == "size":
            head += f" {S2_TILE}^2 tile (projected) |"
        lines += [head, "|---|" + "---:|" * (len(vals) + 2) + ("---:|" if name == "size" else "")]
        for m, r in ax["models"].items():
            by_v = {p["value"]: p for p in r["points"]}
            cells = [f"{by_v[v]['seconds']:.2f} / {by_v[v]['peak_rss_mb']:.0f}" if v in by_v else "-" for v in vals]
            te = f"{r['time_fit']['exponent']:.2f}" if r["time_fit"] else "-"
            re_ = f"{r['rss_fit']['exponent']:.2f}" if r["rss_fit"] else "-"
            row = f"| {m} | " + " | ".join(cells) + f" | {te} | {re_} |"
            if name == "size":
                p = r.get("projection")
                mark = "" if not p or p["method"] == "fit" else " (linear)"
                row += f" {_fmt_s(p['seconds'])}, {p['peak_rss_mb']:.0f} MB{mark} |" if p else " - |"
            lines.append(row)
        lines.append("")
    for k, v in report.get("checks", {}).items():
        if v:
            lines.append(f"- {k}: " + ", ".join(f"{m} {x:.2f}" for m, x in v.items() if x is not None))
    return "\n".join(lines)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        print(json.dumps(_child(json.loads(argv[1])), default=float))
        return 0
    d = Settings()
    p = argparse.ArgumentParser(prog="landcover bench scale", description=__doc__.splitlines()[0])
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"JSON report (default {DEFAULT_OUT.relative_to(REPO)})"
    )
    p.add_argument("--axes", default=",".join(d.axes), help=f"axes to measure ({', '.join(AXES)})")
    p.add_argument("--sizes", default=",".join(map(str, d.sizes)), help="raster sides of the size axis")
    p.add_argument("--bands", default=",".join(map(str, d.bands)), help="band counts of the bands axis")
    p.add_argument("--bands-size", type=int, default=d.bands_size, help="raster side of the bands axis")
    p.add_argument("--models", default=",".join(d.size_models), help="models of the size axis")
    p.add_argument("--bands-models", default=",".join(d.bands_models), help="models of the bands axis")
    p.add_argument(
        "--max-size",
        action="append",
        default=[],
        metavar="MODEL=SIZE",
        help="largest raster side a model is mapped at (repeatable; defaults: "
        + ", ".join(f"{k}={v}" for k, v in MAX_SIZE.items())
        + ")",
    )
    p.add_argument(
        "--labelled",
        default=",".join(map(str, d.labelled)),
        help="labelled pixels of the labelled axis (whole runs on dense label rasters)",
    )
    p.add_argument("--labelled-models", default=",".join(d.labelled_models), help="models of the labelled axis")
    p.add_argument("--labelled-epochs", type=int, default=d.labelled_epochs, help="epochs of deep labelled-axis models")
    p.add_argument(
        "--labelled-no-random-contrast",
        action="store_true",
        help="labelled axis: split.random_contrast false (one fit per model instead of two; peak memory is one fit's)",
    )
    p.add_argument(
        "--dask-workers",
        default=",".join(map(str, d.dask_workers)),
        help="worker counts of the workers axis (a local Dask cluster per point)",
    )
    p.add_argument("--workers-size", type=int, default=d.workers_size, help="raster side of the workers axis")
    p.add_argument("--workers-model", default=d.workers_model, help="model of the workers axis")
    p.add_argument("--repeats", type=int, default=d.repeats)
    p.add_argument("--window-size", type=int, default=d.window_size)
    p.add_argument("--n-train", type=int, default=d.n_train)
    p.add_argument("--rf-trees", type=int, default=d.rf_trees)
    p.add_argument("--svm-train", type=int, default=d.svm_train)
    p.add_argument("--deep-channels", type=int, default=d.deep_channels)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--workdir", type=Path, default=None, help="where the temporary rasters go")
    a = p.parse_args(argv)
    axes = tuple(x.strip() for x in a.axes.split(",") if x.strip())
    models = tuple(x.strip() for x in a.models.split(",") if x.strip())
    bmodels = tuple(x.strip() for x in a.bands_models.split(",") if x.strip())
    bad = [x for x in axes if x not in AXES] + [x for x in models + bmodels if x not in MODELS]
    bad += [a.workers_model] if a.workers_model not in MODELS or a.workers_model in FLOORS else []
    if bad:
        p.error(f"unknown axis or model {bad[0]!r}")
    max_size = dict(MAX_SIZE)
    for item in a.max_size:
        k, _, v = item.partition("=")
        if k not in MODELS or not v.isdigit():
            p.error(f"--max-size: expected MODEL=SIZE, got {item!r}")
        max_size[k] = int(v)
    sizes, bands = _ints(a.sizes), _ints(a.bands)
    if min(sizes, default=0) < 16 or min(bands, default=0) < 1 or a.repeats < 1:
        p.error("sizes must be at least 16, bands at least 1, repeats at least 1")
    s = Settings(
        sizes=sizes,
        bands=bands,
        bands_size=a.bands_size,
        size_models=models,
        bands_models=bmodels,
        max_size=max_size,
        axes=axes,
        repeats=a.repeats,
        window_size=a.window_size,
        seed=a.seed,
        n_train=a.n_train,
        rf_trees=a.rf_trees,
        svm_train=a.svm_train,
        deep_channels=a.deep_channels,
        labelled=_ints(a.labelled),
        dask_workers=_ints(a.dask_workers),
        workers_size=a.workers_size,
        workers_model=a.workers_model,
        labelled_models=tuple(x.strip() for x in a.labelled_models.split(",") if x.strip()),
        labelled_epochs=a.labelled_epochs,
        labelled_random_contrast=not a.labelled_no_random_contrast,
        argv=tuple(argv),
    )
    report = run_bench(a.out, s, workdir=a.workdir, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(table(report))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

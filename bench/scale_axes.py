"""The axes of ``landcover bench scale`` (:mod:`bench.scale`) and the jobs of their points.

An :class:`Axis` is one line of growth: its values, the models measured at each, what x is, and a
``setup`` that writes the inputs of every point (rasters, fitted models; untimed) and returns one
child job per point. :data:`JOBS` names what a child process can run for a point: ``map`` (what
``landcover map`` does: load the model, classify window by window, write the COG), ``map_dask``
(the same on a local Dask cluster) and ``run`` (a whole ``landcover run``, :mod:`bench.scale_mem`).
:class:`Settings` holds everything a run of the benchmark depends on.

Adding an axis is one :class:`Axis` in :data:`AXES` (and its values in :func:`axis_values`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.floors import FLOORS, floor_model
from bench.synthetic import band_names, model_meta, write_raster

S2_TILE = 10980  # pixels on a side of one Sentinel-2 tile at 10 m
# Everything the size axis can map: the I/O floors (bench.floors) and the models.
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


# -- models ------------------------------------------------------------------------------------
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
    model = build_model(name, settings, model_meta(name, band_names(n_bands), s.patch_size if deep else 1), seed=s.seed)
    if deep:
        model.progress = False
    model.fit(train)
    return str(model.save(workdir / f"{name}-{n_bands}b{model_suffix(name)}"))


# -- jobs: what a child process runs for one point ---------------------------------------------
def job_map(model: str, raster: str, out: str, window_size: int) -> dict[str, Any]:
    """Map ``raster`` as ``landcover map`` does (load, classify, COG) and time it."""
    from bench.procstat import rss_mb
    from pipeline.mapping.classify import classify_raster, open_for_model
    from pipeline.models import load_model

    if model in FLOORS:  # zeros, or a real class map from one band cut at fixed values
        import rasterio

        with rasterio.open(raster) as ds:
            n = ds.count
        m: Any = floor_model(model, model_meta("decision_tree", band_names(n)))
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


def axis_values(name: str, s: Settings) -> tuple[int, ...]:
    """The values of axis ``name`` that the settings ask for."""
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

"""Benchmark: how mapping time and peak memory grow with raster size and band count.

``landcover bench scale`` (or ``python -m bench.scale``) measures points along
*axes*, one table entry per axis (:data:`bench.scale_axes.AXES`):

* ``size``: square rasters of 1024-8192 px, 6 bands, every model (slow models stop at a
  smaller size, :data:`bench.scale_axes.MAX_SIZE`); the growth exponent is fitted against the pixel count;
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

Adding an axis is one :class:`~bench.scale_axes.Axis` in :data:`bench.scale_axes.AXES`: its
values, models, what x is, and a ``setup`` function that writes the inputs of each point and
returns the child jobs (:data:`bench.scale_axes.JOBS` names what a child process can run).
This module runs the points, fits the growth and writes the report.
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
from pathlib import Path
from typing import Any

import numpy as np

from bench.floors import FLOORS
from bench.scale_axes import AXES, JOBS, MAX_SIZE, MODELS, S2_TILE, Axis, Settings, axis_values
from bench.synthetic import TILE
from pipeline.core.atomic import write_json

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "reports" / "bench" / "scale.json"


# -- child processes: one point each -----------------------------------------------------------
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
            "values": list(axis_values(name, s)),
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
    """Markdown tables of a report (docs/benchmarks.md's scale section)."""
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

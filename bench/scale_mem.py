"""Benchmark: peak memory and time of whole runs against labelled pixels and band count.

``python -m bench.scale_mem`` (or ``landcover bench scale_mem``) writes synthetic scenes into a
temporary folder and runs ``landcover run`` on them, each run in its own subprocess so that
``peak_rss_mb`` (``ru_maxrss`` from ``os.wait4`` of that process and the children it waited
for) is that run's own peak. Cases (``--cases``):

* ``labelled``: the labelled-pixels axis. Square 6-band uint16 scenes fully covered by a dense
  label raster (5 classes in 128-pixel cells with ragged edges), ``--points`` labelled pixels
  each (default 10k, 100k, 1M, 4M), decision tree + CNN (2 epochs), sampling at its defaults
  (``auto``: on above 1M labelled pixels). :func:`labelled_axis` is the function other
  benchmarks (``bench scale``) call for this axis.
* ``dense16m``: a fully labelled 4096 x 4096 x 6 scene (16.7 M labelled pixels), all six
  models (deep ones 2 epochs), prepare + train + map + assess + report in one run.
* ``hyper218``: a 218-band int16 250 x 250 raster (27 MB) with 5.7k labelled pixels (a
  sparse label raster), all six models (deep ones 2 epochs).

Each point records the command, wall seconds, peak RSS, the number of samples the run kept
and the size of its patch store. Results go to ``reports/bench/scale_mem.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ALL_MODELS = ("decision_tree", "random_forest", "svm", "max_likelihood", "cnn", "resnet")
CLASSES = [{"id": i, "name": n} for i, n in enumerate(["water", "forest", "crop", "urban", "bare"], start=1)]


def _profile(width: int, height: int, count: int, dtype: str, nodata: Any) -> dict:
    from rasterio.transform import from_origin

    return dict(driver="GTiff", width=width, height=height, count=count, dtype=dtype, crs="EPSG:32633",
                transform=from_origin(500000.0, 4500000.0, 10.0, 10.0), nodata=nodata, tiled=True,
                blockxsize=256, blockysize=256, compress="deflate", interleave="pixel")


def dense_scene(folder: Path, side: int, bands: int = 6, seed: int = 0) -> tuple[Path, Path]:
    """A ``side x side x bands`` uint16 image and a label raster labelling every pixel (5 classes).

    Classes fill 128-pixel cells with ragged edges (so a split has many blocks of each class);
    each class has its own mean spectrum plus noise. Written in strips: memory stays small.
    """
    import rasterio
    from rasterio.windows import Window

    rng = np.random.default_rng(seed)
    cell = 128
    n_cells = side // cell + 2
    cell_cls = rng.integers(1, 6, size=(n_cells, n_cells)).astype(np.uint8)
    means = rng.uniform(800, 3000, size=(6, bands))
    img_p, lab_p = folder / f"dense{side}_img.tif", folder / f"dense{side}_lab.tif"
    with rasterio.open(img_p, "w", **_profile(side, side, bands, "uint16", 0)) as img, \
            rasterio.open(lab_p, "w", **_profile(side, side, 1, "uint8", 0)) as lab:
        for r0 in range(0, side, 256):
            h = min(256, side - r0)
            rr, cc = np.mgrid[r0:r0 + h, 0:side]
            jr = (rr + rng.integers(-6, 7, size=rr.shape)) // cell + 1
            jc = (cc + rng.integers(-6, 7, size=cc.shape)) // cell + 1
            cls = cell_cls[np.clip(jr, 0, n_cells - 1), np.clip(jc, 0, n_cells - 1)]
            lab.write(cls[None], window=Window(0, r0, side, h))
            data = means[cls][..., :] + rng.normal(0, 150, size=(h, side, bands))
            img.write(np.clip(np.moveaxis(data, -1, 0), 1, 65535).astype(np.uint16), window=Window(0, r0, side, h))
    return img_p, lab_p


def hyperspectral_scene(folder: Path, bands: int = 218, side: int = 250, labelled: int = 5700,
                        seed: int = 0) -> tuple[Path, Path]:
    """A ``side x side x bands`` int16 raster (27 MB for the defaults) and a sparse label raster
    with ``labelled`` pixels in 5 classes (rectangular fields; 0 = unlabelled)."""
    import rasterio

    rng = np.random.default_rng(seed)
    cls_map = np.zeros((side, side), np.uint8)
    truth = (rng.integers(1, 6, size=(side // 25 + 1, side // 25 + 1)))
    rr, cc = np.mgrid[0:side, 0:side]
    full = truth[rr // 25, cc // 25].astype(np.uint8)
    # label fields: 5x5-pixel squares placed at random until ``labelled`` pixels are reached
    while (cls_map > 0).sum() < labelled:
        r, c = rng.integers(0, side - 5, 2)
        cls_map[r:r + 5, c:c + 5] = full[r:r + 5, c:c + 5]
    extra = int((cls_map > 0).sum() - labelled)
    if extra > 0:
        on = np.flatnonzero(cls_map.ravel() > 0)
        cls_map.ravel()[rng.choice(on, extra, replace=False)] = 0
    spectra = rng.uniform(500, 4000, size=(6, bands)).cumsum(axis=1) / np.arange(1, bands + 1)
    img = spectra[full] + rng.normal(0, 120, size=(side, side, bands))
    img_p, lab_p = folder / f"hyper{bands}_img.tif", folder / f"hyper{bands}_lab.tif"
    prof = _profile(side, side, bands, "int16", -9999)
    prof.update(interleave="band")
    with rasterio.open(img_p, "w", **prof) as dst:
        dst.write(np.clip(np.moveaxis(img, -1, 0), -9000, 32000).astype(np.int16))
    with rasterio.open(lab_p, "w", **_profile(side, side, 1, "uint8", 0)) as dst:
        dst.write(cls_map[None])
    return img_p, lab_p


def write_config(folder: Path, name: str, img: Path, lab: Path, models: tuple[str, ...], epochs: int = 2,
                 extra: dict | None = None) -> Path:
    import yaml

    mcfg: dict[str, Any] = {}
    for m in models:
        mcfg[m] = {"epochs": epochs} if m in ("cnn", "resnet") else {}
    cfg = {"name": name, "seed": 0, "rasters": {"paths": [str(img)]}, "labels": {"path": str(lab)},
           "classes": CLASSES, "models": mcfg, **(extra or {})}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_measured(config: Path, out: Path, run_id: str, timeout: float = 7200) -> dict[str, Any]:
    """``landcover run`` in its own process: wall seconds and that process tree's peak RSS."""
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(config), "--out", str(out), "--run-id", run_id,
           "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
           "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
           "PREFECT_HOME": tempfile.mkdtemp(prefix="prefect-bench-")}
    t0 = time.perf_counter()
    with open(out / f"{run_id}.log", "w") as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    secs = time.perf_counter() - t0
    rec: dict[str, Any] = {"command": " ".join(["landcover", *cmd[3:]]), "returncode": p.returncode,
                           "seconds": round(secs, 1), "peak_rss_mb": round(ru.ru_maxrss / 1024, 1)}
    run = out / run_id
    if (run / "labels.json").exists():
        labels = json.loads((run / "labels.json").read_text())
        rec["labelled_pixels"] = int(sum(labels.get("pixels_per_class", {}).values()))
        rec["sampling"] = {k: labels.get("sampling", {}).get(k) for k in ("active", "reason", "samples_after",
                                                                          "thinning_stride")}
    if (run / "patches.npy").exists():
        rec["patch_store_mb"] = round((run / "patches.npy").stat().st_size / 2 ** 20, 1)
    if (run / "manifest.json").exists():
        man = json.loads((run / "manifest.json").read_text())
        rec["stages"] = {s["name"]: s["seconds"] for s in man.get("stages", [])}
    if p.returncode != 0:
        rec["log_tail"] = (out / f"{run_id}.log").read_text()[-2000:]
    return rec


def labelled_axis(points: tuple[int, ...] = (10_000, 100_000, 1_000_000, 4_000_000),
                  models: tuple[str, ...] = ("decision_tree", "cnn"), epochs: int = 2,
                  workdir: Path | None = None) -> list[dict[str, Any]]:
    """Time and peak RSS of a whole run against labelled pixels (dense label rasters, sampling
    at its defaults), one subprocess per point. Returns one record per point."""
    own = workdir is None
    tmp = Path(tempfile.mkdtemp(prefix="bench-labelled-")) if own else Path(workdir)
    out = []
    try:
        for n in points:
            side = int(math.ceil(math.sqrt(n)))
            img, lab = dense_scene(tmp, side)
            cfg = write_config(tmp, f"labelled{n}", img, lab, models, epochs)
            rec = run_measured(cfg, tmp, f"labelled{n}")
            rec.update(point=n, side=side, models=list(models))
            print(f"labelled {n:>9,}: {rec['seconds']:8.1f} s  peak {rec['peak_rss_mb']:8.1f} MB  "
                  f"samples {rec.get('sampling', {}).get('samples_after') or rec.get('labelled_pixels')}", flush=True)
            out.append(rec)
            _clean(tmp, f"labelled{n}", [img, lab])
    finally:
        if own:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _clean(tmp: Path, run_id: str, files: list[Path]) -> None:
    import shutil

    shutil.rmtree(tmp / run_id, ignore_errors=True)
    for f in files:
        f.unlink(missing_ok=True)


def growth_exponent(xs: list[float], ys: list[float]) -> float | None:
    """Slope of log(y) against log(x) (least squares): y ~ x^slope."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y and y > 0]
    if len(pts) < 2:
        return None
    a = np.array(pts)
    return float(np.polyfit(a[:, 0], a[:, 1], 1)[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.scale_mem", description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="labelled,dense16m,hyper218")
    ap.add_argument("--points", default="10000,100000,1000000,4000000")
    ap.add_argument("--out", default=str(REPO / "reports" / "bench" / "scale_mem.json"))
    args = ap.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    out_path = Path(args.out)
    report: dict[str, Any] = json.loads(out_path.read_text()) if out_path.exists() else {}
    report.update(machine={"cpus": os.cpu_count(), "python": platform.python_version()},
                  date=time.strftime("%Y-%m-%d"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-mem-"))
    try:
        if "labelled" in cases:
            pts = tuple(int(p) for p in args.points.split(","))
            axis = labelled_axis(pts, workdir=tmp)
            report["labelled_axis"] = {
                "points": axis,
                "growth_exponent_seconds": growth_exponent([r["point"] for r in axis], [r["seconds"] for r in axis]),
                "growth_exponent_peak_rss": growth_exponent([r["point"] for r in axis],
                                                            [r["peak_rss_mb"] for r in axis])}
        if "hyper218" in cases:
            img, lab = hyperspectral_scene(tmp)
            cfg = write_config(tmp, "hyper218", img, lab, ALL_MODELS)
            rec = run_measured(cfg, tmp, "hyper218")
            rec.update(raster_mb=round(img.stat().st_size / 2 ** 20, 1), models=list(ALL_MODELS))
            print(f"hyper218: {rec['seconds']} s, peak {rec['peak_rss_mb']} MB", flush=True)
            report["hyper218"] = rec
            _clean(tmp, "hyper218", [img, lab])
        if "dense16m" in cases:
            img, lab = dense_scene(tmp, 4096)
            cfg = write_config(tmp, "dense16m", img, lab, ALL_MODELS)
            rec = run_measured(cfg, tmp, "dense16m", timeout=4 * 3600)
            rec.update(models=list(ALL_MODELS), side=4096)
            print(f"dense16m: {rec['seconds']} s, peak {rec['peak_rss_mb']} MB", flush=True)
            report["dense16m"] = rec
            _clean(tmp, "dense16m", [img, lab])
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2))
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

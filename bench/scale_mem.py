"""Benchmark: peak memory and time of whole runs on dense labels and on many bands.

``python -m bench.scale_mem`` (or ``landcover bench scale_mem``) writes synthetic scenes into a
temporary folder and runs ``landcover run`` on each in its own subprocess
(:func:`bench.scale.run_child`), so that ``peak_rss_mb`` (``VmHWM``, see :mod:`bench.procstat`)
is that run's own peak. Cases (``--cases``):

* ``dense16m``: a fully labelled 4096 x 4096 x 6 uint16 scene (16.7 M labelled pixels, a dense
  label raster), all six models (deep ones 2 epochs), prepare + train + map + assess + report.
* ``hyper218``: a 218-band int16 250 x 250 raster (27 MB) with 5,700 labelled pixels (a sparse
  label raster), all six models (deep ones 2 epochs).

The labelled-pixels axis of ``landcover bench scale`` (``--axes labelled``) uses
:func:`setup_labelled` and :func:`job_run` from here: square dense scenes of 10k-4M labelled
pixels, decision tree + CNN (``--labelled-epochs``, default 2), sampling at its defaults.
Results go to ``reports/bench/scale_mem.json``, one entry per case (``<case>-local`` for
``--engine local``), so runs of each engine and case add to the same file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
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

    return dict(
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=dtype,
        crs="EPSG:32633",
        transform=from_origin(500000.0, 4500000.0, 10.0, 10.0),
        nodata=nodata,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        interleave="pixel",
    )


def dense_scene(folder: Path, side: int, bands: int = 6, seed: int = 0) -> tuple[Path, Path]:
    """A ``side x side x bands`` uint16 image and a label raster labelling every pixel (5 classes).

    Classes fill cells (128 pixels; smaller in small scenes) with ragged edges (so a split has many blocks of each class);
    each class has its own mean spectrum plus noise. Written in strips: memory stays small.
    """
    import rasterio
    from rasterio.windows import Window

    rng = np.random.default_rng(seed)
    cell = min(128, max(8, side // 12))  # small scenes still hold every class in several places
    n_cells = side // cell + 2
    cell_cls = rng.integers(1, 6, size=(n_cells, n_cells)).astype(np.uint8)
    means = rng.uniform(800, 3000, size=(6, bands))
    img_p, lab_p = folder / f"dense{side}_img.tif", folder / f"dense{side}_lab.tif"
    with (
        rasterio.open(img_p, "w", **_profile(side, side, bands, "uint16", 0)) as img,
        rasterio.open(lab_p, "w", **_profile(side, side, 1, "uint8", 0)) as lab,
    ):
        for r0 in range(0, side, 256):
            h = min(256, side - r0)
            rr, cc = np.mgrid[r0 : r0 + h, 0:side]
            jr = (rr + rng.integers(-6, 7, size=rr.shape)) // cell + 1
            jc = (cc + rng.integers(-6, 7, size=cc.shape)) // cell + 1
            cls = cell_cls[np.clip(jr, 0, n_cells - 1), np.clip(jc, 0, n_cells - 1)]
            lab.write(cls[None], window=Window(0, r0, side, h))
            data = means[cls][..., :] + rng.normal(0, 150, size=(h, side, bands))
            img.write(np.clip(np.moveaxis(data, -1, 0), 1, 65535).astype(np.uint16), window=Window(0, r0, side, h))
    return img_p, lab_p


def hyperspectral_scene(
    folder: Path, bands: int = 218, side: int = 250, labelled: int = 5700, seed: int = 0
) -> tuple[Path, Path]:
    """A ``side x side x bands`` int16 raster (27 MB for the defaults) and a sparse label raster
    with ``labelled`` pixels in 5 classes (rectangular fields; 0 = unlabelled)."""
    import rasterio

    rng = np.random.default_rng(seed)
    cls_map = np.zeros((side, side), np.uint8)
    truth = rng.integers(1, 6, size=(side // 25 + 1, side // 25 + 1))
    rr, cc = np.mgrid[0:side, 0:side]
    full = truth[rr // 25, cc // 25].astype(np.uint8)
    # label fields: 5x5-pixel squares placed at random until ``labelled`` pixels are reached
    while (cls_map > 0).sum() < labelled:
        r, c = rng.integers(0, side - 5, 2)
        cls_map[r : r + 5, c : c + 5] = full[r : r + 5, c : c + 5]
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


def write_config(
    folder: Path, name: str, img: Path, lab: Path, models: tuple[str, ...], epochs: int = 2, extra: dict | None = None
) -> Path:
    import yaml

    mcfg: dict[str, Any] = {}
    for m in models:
        mcfg[m] = {"epochs": epochs} if m in ("cnn", "resnet") else {}
    cfg = {
        "name": name,
        "seed": 0,
        "rasters": {"paths": [str(img)]},
        "labels": {"path": str(lab)},
        "classes": CLASSES,
        "models": mcfg,
        **(extra or {}),
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def job_run(config: str, out: str, run_id: str, engine: str | None = None) -> dict[str, Any]:
    """Child side (see :func:`bench.scale.run_child`): ``landcover run`` in this process, timed.

    The peak RSS the parent records is this process's ``VmHWM``: ingestion, split, patch store,
    training, mapping, assessment and report of the whole run. With the default engine, Prefect's
    ephemeral API server is a process of its own (about 230 MB) and is not included;
    ``engine="local"`` runs the same stages in this process without Prefect.
    """
    import pipeline.runner.pipeline  # noqa: F401  untimed: the imports of a run (torch, scikit-learn, Prefect come later)
    from bench.procstat import rss_mb
    from pipeline.cli.main import main as cli_main

    rss0 = rss_mb()
    t0 = time.perf_counter()
    args = ["run", config, "--out", out, "--run-id", run_id, "--no-progress"] + (["--engine", engine] if engine else [])
    code = cli_main(args)
    rec: dict[str, Any] = {
        "seconds": time.perf_counter() - t0,
        "returncode": code,
        "rss_before_mb": rss0,
        "command": "landcover " + " ".join(args),
        "engine": engine or "prefect",
    }
    run = Path(out) / run_id
    if (run / "labels.json").exists():
        labels = json.loads((run / "labels.json").read_text())
        rec["labelled_pixels"] = int(sum(labels.get("pixels_per_class", {}).values()))
        smp = labels.get("sampling") or {}
        rec["sampling"] = {k: smp.get(k) for k in ("active", "reason", "samples_after", "thinning_stride", "caps")}
    if (run / "patches.npy").exists():
        rec["patch_store_mb"] = round((run / "patches.npy").stat().st_size / 2**20, 2)
    if (run / "manifest.json").exists():
        man = json.loads((run / "manifest.json").read_text())
        rec["stages"] = {s["name"]: s["seconds"] for s in man.get("stages", [])}
    import shutil

    if (run / "metrics.json").exists():
        rec["failed_models"] = json.loads((run / "metrics.json").read_text()).get("failed_models") or {}
    shutil.rmtree(run, ignore_errors=True)  # the next point needs the disk, not this run
    return rec


def setup_labelled(axis: Any, s: Any, workdir: Path, log: Any) -> dict[tuple[int, str], dict]:
    """Inputs of the labelled-pixels axis of ``bench scale``: one dense scene per point (a square
    of about that many pixels, every pixel labelled) and its config; one ``run`` job per point."""
    jobs = {}
    models = tuple(getattr(s, "labelled_models", ("decision_tree", "cnn")))
    split = None if getattr(s, "labelled_random_contrast", True) else {"split": {"random_contrast": False}}
    for n in sorted(s.labelled):
        side = int(math.ceil(math.sqrt(n)))
        t0 = time.perf_counter()
        img, lab = dense_scene(workdir, side, seed=s.seed)
        cfg = write_config(
            workdir, f"labelled{n}", img, lab, models, epochs=getattr(s, "labelled_epochs", 2), extra=split
        )
        log(
            f"dense scene {side} x {side} ({side * side:,} labelled pixels) written in {time.perf_counter() - t0:.1f} s"
        )
        # In process (--engine local): the data path without the Prefect server's start-up and load.
        jobs[(n, "+".join(models))] = {
            "kind": "run",
            "args": {"config": str(cfg), "out": str(workdir), "run_id": f"labelled{n}", "engine": "local"},
        }
    return jobs


def add_entry(out_path: Path, key: str, rec: dict[str, Any]) -> dict[str, Any]:
    """Put ``rec`` under ``key`` in the report at ``out_path``, reading the file just before
    writing it, so that runs of other cases or engines (even at the same time: each run takes
    minutes) keep their entries. Atomic write."""
    from pipeline.core.atomic import write_json

    try:
        report: dict[str, Any] = json.loads(out_path.read_text())
    except (OSError, ValueError):
        report = {}
    report.update(
        benchmark="scale_mem",
        machine={"cpus": os.cpu_count(), "python": platform.python_version()},
        date=time.strftime("%Y-%m-%d"),
    )
    report.pop("command", None)  # each entry names its own command (bench_command, command)
    report[key] = rec
    write_json(out_path, report)
    return report


def main(argv: list[str] | None = None) -> int:
    from bench.scale import run_child

    ap = argparse.ArgumentParser(prog="bench.scale_mem", description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="hyper218,dense16m", help="hyper218, dense16m")
    ap.add_argument("--out", default=str(REPO / "reports" / "bench" / "scale_mem.json"))
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument(
        "--engine",
        choices=["auto", "prefect", "local"],
        default=None,
        help="landcover run --engine (default: the CLI's, auto: in process unless a Prefect API is configured)",
    )
    ap.add_argument(
        "--no-random-contrast",
        action="store_true",
        help="split.random_contrast: false (halves training time; memory is that of one fit)",
    )
    args = ap.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    out_path = Path(args.out)
    command = " ".join(["python -m bench.scale_mem", *(argv or [])])
    with tempfile.TemporaryDirectory(prefix="bench-scale-mem-", dir=args.workdir) as tmp:
        tmp = Path(tmp)
        for case in cases:
            if case == "hyper218":
                img, lab = hyperspectral_scene(tmp)
                extra = {"raster_mb": round(img.stat().st_size / 2**20, 1), "side": 250, "bands": 218}
            elif case == "dense16m":
                img, lab = dense_scene(tmp, 4096)
                extra = {"raster_mb": round(img.stat().st_size / 2**20, 1), "side": 4096, "bands": 6}
            else:
                ap.error(f"unknown case {case!r}")
            split = {"split": {"random_contrast": False}} if args.no_random_contrast else None
            cfg = write_config(tmp, case, img, lab, ALL_MODELS, extra=split)
            rec = run_child(
                {"kind": "run", "args": {"config": str(cfg), "out": str(tmp), "run_id": case, "engine": args.engine}}
            )
            rec.update(models=list(ALL_MODELS), deep_epochs=2, random_contrast=not args.no_random_contrast, **extra)
            print(
                f"{case}: {rec['seconds']:.1f} s, peak {rec['peak_rss_mb']:.0f} MB, "
                f"samples {rec.get('sampling', {}).get('samples_after') or rec.get('labelled_pixels')}",
                flush=True,
            )
            rec["bench_command"] = command
            # one entry per case and engine: the Prefect and the in-process figures side by side
            add_entry(out_path, case if args.engine in (None, "prefect") else f"{case}-{args.engine}", rec)
            img.unlink(missing_ok=True)
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

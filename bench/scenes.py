"""Benchmark: peak memory of a multi-scene run against a one-scene run.

``landcover bench scenes`` (or ``python -m bench.scenes``):

1. writes one synthetic tile and, apart, ``n`` tiles (``size x size``, 4 uint16 bands,
   DEFLATE, 256 px blocks) with a label raster each (:func:`make_tiles`). The single tile is
   labelled on every ``label_step``-th pixel of each row and column, the ``n`` tiles on every
   ``label_step * sqrt(n)``-th, so both runs have the same number of labelled pixels and
   differ only in scenes and pixels (``n`` times as many). With ``--same-density`` the
   ``n`` tiles are labelled as densely as the one, i.e. ``n`` times the samples too;
2. runs the pipeline (decision tree, ``split.strategy: random``, ``--engine``-free: the
   stage functions in-process through :func:`pipeline.runner.pipeline.run_pipeline`) on 1 tile and on
   all ``n`` tiles, each run in its own fresh subprocess, interleaved over ``repeats``;
   ``peak_rss_mb`` is that subprocess's own ``VmHWM`` (:mod:`bench.procstat`);
3. writes ``reports/bench/scenes.json`` with every repeat, the medians and
   ``ratio = median peak(n tiles) / median peak(1 tile)``.

If memory followed the number of scenes or pixels, the ratio would approach ``n``; the
pipeline reads, tiles and maps scene by scene and window by window, so it stays near 1.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLASSES = [
    {"id": 1, "name": "water", "color": "#2166ac"},
    {"id": 2, "name": "forest", "color": "#1b7837"},
    {"id": 3, "name": "urban", "color": "#e31a1c"},
]
MEANS = np.array([[400, 300, 200, 100], [500, 700, 400, 2500], [1500, 1400, 1600, 1800]], dtype=np.float64)


def tile_classes(xs: np.ndarray, ys: np.ndarray, cell: float = 200.0) -> np.ndarray:
    """Class id (1..3) of map coordinates: a checkerboard-like pattern of ``cell``-metre squares,
    the same for every tile (continuous across tile borders), so every tile holds every class."""
    return (1 + (np.floor(xs / cell) + 2 * np.floor(ys / cell)) % 3).astype(np.uint8)


def make_tiles(
    folder: Path,
    n: int,
    size: int = 64,
    res: float = 10.0,
    crs: str = "EPSG:32633",
    label_step: int = 1,
    seed: int = 0,
    other_crs: dict[int, str] | None = None,
    per_row: int | None = None,
) -> list[dict[str, Any]]:
    """Write ``n`` adjacent tiles ``images/tile_<i>.tif`` (4 bands uint16, nodata 0) and their label
    rasters ``labels/tile_<i>.tif`` (uint8, nodata 0, every ``label_step``-th pixel labelled).

    Tiles are laid out ``per_row`` to a row (default: a square-ish grid) on one 10 m grid;
    ``other_crs`` maps a tile index to another CRS for that tile (its pixels then describe
    the same pattern in that CRS's coordinates). Writing goes row block by row block, so memory
    follows one block. Returns one ``{"name", "image", "labels", "crs", "origin"}`` per tile.
    """
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    per_row = per_row or int(np.ceil(np.sqrt(n)))
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        tr, tc = divmod(i, per_row)
        x0, y0 = 500000.0 + tc * size * res, 4000000.0 - tr * size * res
        tile_crs = (other_crs or {}).get(i, crs)
        name = f"tile_{i:02d}"
        img, lab = folder / "images" / f"{name}.tif", folder / "labels" / f"{name}.tif"
        common = dict(
            driver="GTiff",
            width=size,
            height=size,
            crs=tile_crs,
            transform=from_origin(x0, y0, res, res),
            tiled=size >= 256,
            compress="deflate",
            nodata=0,
        )
        if size >= 256:
            common.update(blockxsize=256, blockysize=256)
        with (
            rasterio.open(img, "w", count=4, dtype="uint16", **common) as di,
            rasterio.open(lab, "w", count=1, dtype="uint8", **common) as dl,
        ):
            for b, name_ in enumerate(("blue", "green", "red", "nir"), 1):
                di.set_band_description(b, name_)
            step = 256
            for r0 in range(0, size, step):
                h = min(step, size - r0)
                rows = np.arange(r0, r0 + h)[:, None]
                cols = np.arange(size)[None, :]
                xs, ys = x0 + (cols + 0.5) * res, y0 - (rows + 0.5) * res
                cls = tile_classes(np.broadcast_to(xs, (h, size)), np.broadcast_to(ys, (h, size)))
                bands = MEANS[cls - 1].transpose(2, 0, 1) + rng.normal(0, 60, size=(4, h, size))
                win = Window(0, r0, size, h)
                di.write(np.clip(bands, 1, 65535).astype(np.uint16), window=win)
                keep = (rows % label_step == 0) & (cols % label_step == 0)
                dl.write(np.where(keep, cls, 0).astype(np.uint8)[None], window=win)
        out.append({"name": name, "image": str(img), "labels": str(lab), "crs": tile_crs, "origin": (x0, y0)})
    return out


def tiles_config(tiles: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A run config (as a dict) with one scene per tile."""
    cfg = {
        "name": "tiles",
        "seed": 0,
        "scenes": [
            {"name": t["name"], "rasters": {"paths": [t["image"]]}, "labels": {"path": t["labels"]}} for t in tiles
        ],
        "classes": CLASSES,
        "patch": {"size": 3},
        "models": {"decision_tree": {}},
    }
    cfg.update(extra)
    return cfg


def _child(config: str, out: str) -> None:
    """Run the pipeline in this process and print its peak RSS (MB) as JSON."""
    from pipeline.config.loading import load_config
    from pipeline.runner.context import init_run_dir
    from pipeline.runner.pipeline import run_pipeline

    cfg, base = load_config(config)
    ctx = init_run_dir(cfg, base, out=Path(out), progress=False)
    t0 = time.perf_counter()
    run_pipeline(ctx)
    samples = int(json.loads((ctx.run_dir / "stages" / "prepare.json").read_text())["n_samples"])
    from bench.procstat import peak_rss_mb

    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "seconds": time.perf_counter() - t0, "samples": samples}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="landcover bench scenes", description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=9)
    ap.add_argument("--size", type=int, default=1024, help="tile width and height in pixels")
    ap.add_argument("--label-step", type=int, default=16, help="label every n-th pixel of each row and column")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--window-size", type=int, default=256)
    ap.add_argument(
        "--same-density", action="store_true", help="label the n tiles as densely as the one tile (n times the samples)"
    )
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "bench" / "scenes.json")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    import yaml

    runs: dict[str, list[dict]] = {"one": [], "many": []}
    with tempfile.TemporaryDirectory(prefix="bench-scenes-") as tmp:
        tmp = Path(tmp)
        one = make_tiles(tmp / "one", 1, size=args.size, label_step=args.label_step)
        many_step = args.label_step if args.same_density else int(round(args.label_step * np.sqrt(args.tiles)))
        tiles = make_tiles(tmp / "many", args.tiles, size=args.size, label_step=many_step)
        extra = {
            "split": {"strategy": "random", "random_contrast": False},
            "mapping": {"window_size": args.window_size, "workers": 1},
        }
        configs = {"one": tiles_config(one, **extra), "many": tiles_config(tiles, **extra)}
        for key, cfg in configs.items():
            (tmp / f"{key}.yaml").write_text(yaml.safe_dump(cfg))
        for rep in range(args.repeats):
            for key in ("one", "many"):  # interleaved: load from other processes hits both alike
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.scenes",
                        "--child",
                        str(tmp / f"{key}.yaml"),
                        str(tmp / "runs" / f"{key}-{rep}"),
                    ],
                    cwd=REPO,
                    capture_output=True,
                    text=True,
                )
                if out.returncode != 0:
                    print(out.stderr, file=sys.stderr)
                    return 1
                runs[key].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"repeat {rep} {key:>4}: {runs[key][-1]}", flush=True)
    med = {k: float(np.median([r["peak_rss_mb"] for r in v])) for k, v in runs.items()}
    report = {
        "benchmark": "scenes",
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.platform(),
        "tiles": args.tiles,
        "tile_size": args.size,
        "bands": 4,
        "label_step": args.label_step,
        "label_step_many": many_step,
        "same_density": bool(args.same_density),
        "window_size": args.window_size,
        "repeats": args.repeats,
        "runs": runs,
        "median_peak_rss_mb": med,
        "ratio": med["many"] / med["one"],
        "pixels_ratio": float(args.tiles),
        "samples": {k: v[0]["samples"] for k, v in runs.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(
        f"peak RSS: 1 tile {med['one']:.0f} MB, {args.tiles} tiles {med['many']:.0f} MB, "
        f"ratio {report['ratio']:.2f} (pixels x{args.tiles}, samples {report['samples']['one']:,} and "
        f"{report['samples']['many']:,}); wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Small synthetic scenes for the "unseen scene" tests (issue #11): a few thousand pixels,
polygons spread over the scene so that the default block split has every class in train and
test, and a config written as a user would write it from the README."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import yaml
from rasterio.transform import from_origin
from shapely.geometry import box

CLASSES = [
    {"id": 1, "name": "water", "color": "#2166ac"},
    {"id": 2, "name": "forest", "color": "#1b7837"},
    {"id": 3, "name": "urban", "color": "#e31a1c"},
]
MEANS = {1: (300.0, 200.0, 150.0), 2: (600.0, 900.0, 500.0), 3: (1500.0, 1300.0, 1600.0)}


def class_image(rows: int, cols: int, cell: int = 8) -> np.ndarray:
    """Class ids 1..3 in a checkerboard of ``cell``-pixel squares (every class everywhere)."""
    r, c = np.mgrid[:rows, :cols]
    return ((r // cell + 2 * (c // cell)) % 3 + 1).astype(np.uint8)


def spectra(classes: np.ndarray, n_bands: int = 3, seed: int = 0, noise: float = 40.0) -> np.ndarray:
    """(bands, rows, cols) float32 reflectances: a class mean per band plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    out = np.empty((n_bands, *classes.shape), dtype=np.float32)
    for b in range(n_bands):
        means = {k: v[b % 3] * (1 + 0.05 * (b // 3)) for k, v in MEANS.items()}
        out[b] = np.vectorize(means.get)(classes) + rng.normal(0, noise, classes.shape)
    return out


def write_raster(path: Path, data: np.ndarray, transform, crs: str, nodata=None) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(data)
    return path


def polygons_on_cells(
    classes: np.ndarray,
    transform,
    crs: str,
    cell: int = 8,
    inset: int = 2,
    step: int = 1,
    cap: dict[str, int] | None = None,
) -> gpd.GeoDataFrame:
    """One square polygon inside every ``step``-th checkerboard cell, labelled with the cell's class
    (at most ``cap[name]`` polygons of a class, spread over the scene)."""
    rows, cols = classes.shape
    geoms, names = [], []
    by_id = {c["id"]: c["name"] for c in CLASSES}
    for i, r0 in enumerate(range(0, rows - cell + 1, cell)):
        for j, c0 in enumerate(range(0, cols - cell + 1, cell)):
            if (i + j) % step:
                continue
            x0, y0 = transform * (c0 + inset, r0 + inset)
            x1, y1 = transform * (c0 + cell - inset, r0 + cell - inset)
            geoms.append(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
            names.append(by_id[int(classes[r0 + cell // 2, c0 + cell // 2])])
    gdf = gpd.GeoDataFrame({"class": names}, geometry=geoms, crs=crs)
    for name, n in (cap or {}).items():
        idx = np.flatnonzero(gdf["class"].to_numpy() == name)
        drop = np.setdiff1d(idx, idx[np.linspace(0, len(idx) - 1, n).round().astype(int)] if n else [])
        gdf = gdf.drop(index=gdf.index[drop]).reset_index(drop=True)
    return gdf


def write_config(path: Path, raster_paths: list[str], label_path: str, models: dict | None = None, **extra) -> Path:
    cfg = {
        "name": "unseen",
        "seed": 0,
        "rasters": {"paths": raster_paths},
        "labels": {"path": label_path, "field": "class"},
        "classes": CLASSES,
        "patch": {"size": 3},
        "models": models or {"decision_tree": {}},
        "mapping": {"window_size": 64, "workers": 1},
    }
    for k, v in extra.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def utm_scene(
    folder: Path,
    rows: int = 64,
    cols: int = 64,
    n_bands: int = 3,
    res: float = 30.0,
    crs: str = "EPSG:32633",
    origin=(500000.0, 4000000.0),
    seed: int = 0,
    step: int = 1,
    cap: dict[str, int] | None = None,
    models: dict | None = None,
    **extra,
) -> Path:
    """A projected scene with polygon labels; returns the config path."""
    folder.mkdir(parents=True, exist_ok=True)
    cls = class_image(rows, cols)
    tr = from_origin(origin[0], origin[1], res, res)
    write_raster(folder / "scene.tif", spectra(cls, n_bands, seed), tr, crs)
    polygons_on_cells(cls, tr, crs, step=step, cap=cap).to_file(folder / "labels.gpkg")
    return write_config(folder / "config.yaml", ["scene.tif"], "labels.gpkg", models, **extra)


def points_scene(
    folder: Path,
    n_inside_per_class: int = 10,
    n_outside: dict[str, int] | None = None,
    extra_classes: list[dict] | None = None,
    models: dict | None = None,
    **extra,
) -> Path:
    """A 64 x 64 projected scene labelled by points, many of which lie outside it.

    ``n_inside_per_class`` points per class fall on pixel centres inside the raster, spread over
    it; ``n_outside[name]`` points of that class lie east of the raster. Returns the config path.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows = cols = 64
    res = 30.0
    cls = class_image(rows, cols)
    tr = from_origin(500000.0, 4000000.0, res, res)
    write_raster(folder / "scene.tif", spectra(cls), tr, "EPSG:32633")
    by_id = {c["id"]: c["name"] for c in CLASSES}
    from shapely.geometry import Point

    pts, names = [], []
    rng = np.random.default_rng(1)
    for cid, name in by_id.items():
        rr, cc = np.nonzero(cls == cid)
        take = rng.choice(len(rr), size=n_inside_per_class, replace=False)
        for r, c in zip(rr[take], cc[take]):
            x, y = tr * (c + 0.5, r + 0.5)
            pts.append(Point(x, y))
            names.append(name)
    for name, n in (n_outside or {}).items():
        for i in range(n):
            pts.append(Point(500000.0 + cols * res + 100 + 7 * i, 4000000.0 - 50 - 3 * i))
            names.append(name)
    gpd.GeoDataFrame({"class": names}, geometry=pts, crs="EPSG:32633").to_file(folder / "points.gpkg")
    cfg = write_config(folder / "config.yaml", ["scene.tif"], "points.gpkg", models, **extra)
    if extra_classes:
        raw = yaml.safe_load(cfg.read_text())
        raw["classes"] += extra_classes
        cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    return cfg

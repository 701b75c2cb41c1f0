"""Full-scene mapping: classify a raster window by window into a Cloud-Optimized GeoTIFF.

Windows are read in the calling thread (GDAL handles are not thread-safe),
classified in a bounded thread pool (numpy, scikit-learn and torch release
the GIL) and written as they finish, so memory is bounded by
``workers * 2`` windows whatever the scene size. The class map is uint8 with
:data:`~pipeline.config.NODATA_CLASS` where the input has no valid data, the
class colours as a colormap and the class names in a tag, with GIS sidecars
(raster attribute table, QGIS style, colour map; :func:`write_class_map`); a
confidence raster (float32, NaN nodata) can be written beside it. Both are built
under temporary names, converted to COG (tiled, DEFLATE, nearest-neighbour
overviews) and renamed at the end.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window
from tqdm import tqdm

import logging

from pipeline.class_table import NAMES_TAG, ClassTable, write_sidecars
from pipeline.config import NODATA_CLASS
from pipeline.errors import InputError
from pipeline.models.base import Classifier
from pipeline.raster import RasterStack

log = logging.getLogger("landcover")


def colormap(class_ids: list[int], colors: list[str]) -> dict[int, tuple[int, int, int, int]]:
    """GDAL colormap for class ids; every other value (nodata too) is transparent black."""
    return ClassTable.of(class_ids, [str(i) for i in class_ids], colors).colormap()


def open_for_model(paths: list[Path] | Path, want: list[str], band_names: list[str] | None = None) -> RasterStack:
    """Open a raster so that its bands line up with a model's ``want`` band names.

    Bands match by name (a raster with more bands gives up the ones the model does not use);
    a raster whose bands carry no names of their own (``band_N`` or file stems) is taken in
    order when the count matches, with a warning. ``band_names`` names the raster's bands
    explicitly. Anything else is an :class:`InputError` naming the file.
    """
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    stack = RasterStack.open(paths, band_names=band_names)
    names = stack.band_names
    if names == want:
        return stack
    if all(w in names for w in want):
        stack.close()
        return RasterStack.open(paths, band_names=band_names, bands=list(want))
    stems = {p.stem for p in paths}
    generic = band_names is None and all(n.startswith("band_") or n in stems for n in names)
    stack.close()
    if stack.count != len(want) and (generic or not set(want) & set(names)):
        raise InputError(f"{paths[0]}: has {stack.count} bands, the model needs {len(want)} ({', '.join(want)})")
    if generic:
        log.warning("%s: bands carry no names; assuming they are %s in this order", paths[0], ", ".join(want))
        return RasterStack.open(paths, band_names=list(want))
    raise InputError(f"{paths[0]}: band names {names} do not match the model's {want}; "
                     "pass --band-names if they are the same bands")


def _tmp(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.stem}.{tag}{path.suffix}")


def _to_cog(src: Path, dst: Path, resampling: str) -> None:
    tmp = _tmp(dst, "cog")
    rasterio.shutil.copy(src, tmp, driver="COG", COMPRESS="DEFLATE", OVERVIEW_RESAMPLING=resampling,
                         BLOCKSIZE=256, NUM_THREADS="ALL_CPUS")
    os.replace(tmp, dst)
    src.unlink(missing_ok=True)


def write_class_map(raw: Path, out_path: Path, classes: ClassTable) -> Path:
    """Turn a finished raw class raster into the class map at ``out_path``: every class map goes through here.

    ``raw`` is a tiled uint8 GeoTIFF of class ids (nodata :data:`NODATA_CLASS`), written
    by the caller; it is consumed. The map gets the class colour map, the ``class_names``
    tag on the dataset and band 1 (both embedded, they survive the COG copy), becomes a
    COG with nearest-neighbour overviews, and gets its ``.tif.aux.xml`` (raster attribute
    table, category names, RGBA colour table), ``.qml`` and ``.clr`` sidecars
    (:mod:`pipeline.class_table`). The sidecars are written before the map is renamed
    into place, so a map under its final name always has them.
    """
    out_path = Path(out_path)
    with rasterio.open(raw, "r+") as ds:
        ds.write_colormap(1, classes.colormap())
        ds.update_tags(**{NAMES_TAG: classes.names_tag()})
        ds.update_tags(1, **{NAMES_TAG: classes.names_tag()})
    write_sidecars(out_path, classes)
    _to_cog(raw, out_path, "NEAREST")
    return out_path


def _classify(model: Classifier, block: np.ndarray, halo: int) -> tuple[np.ndarray, np.ndarray]:
    core = block[:, halo:block.shape[1] - halo, halo:block.shape[2] - halo] if halo else block
    valid = np.all(np.isfinite(core), axis=0)
    out = np.full(valid.shape, NODATA_CLASS, dtype=np.uint8)
    conf = np.full(valid.shape, np.nan, dtype=np.float32)
    if valid.any():
        labels, c = model.predict_block(block)
        out[valid] = labels[valid].astype(np.uint8)
        conf[valid] = c[valid]
    return out, conf


def classify_raster(model: Classifier, stack: RasterStack, out_path: str | Path,
                    confidence_path: str | Path | None = None,
                    window_size: int = 512, workers: int = 2, progress: bool = True) -> dict:
    """Classify every pixel of ``stack`` with ``model`` and write a COG class map.

    The class map is finished by :func:`write_class_map` (class names and colours in
    the file and its sidecars). Returns ``{"path", "confidence_path", "seconds",
    "mpx_per_s", "pixels"}``.
    """
    confidence_path = Path(confidence_path) if confidence_path is not None else None
    if stack.band_names != model.meta.band_names:
        raise InputError(f"{stack.paths[0]}: bands {stack.band_names} do not match the model's {model.meta.band_names}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    g = stack.grid
    halo = int(model.halo)
    profile = dict(driver="GTiff", width=g.width, height=g.height, crs=g.crs, transform=g.transform,
                   tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    raw_map = _tmp(out_path, "raw")
    raw_conf = _tmp(confidence_path, "raw") if confidence_path else None
    workers = max(1, int(getattr(model, "map_workers", workers)))
    t0 = time.perf_counter()
    windows = list(stack.windows(window_size))
    with rasterio.open(raw_map, "w", count=1, dtype="uint8", nodata=NODATA_CLASS, **profile) as dst, \
            (rasterio.open(raw_conf, "w", count=1, dtype="float32", nodata=float("nan"), predictor=3, **profile)
             if raw_conf else _Null()) as cdst, \
            ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=g.width * g.height / 1e6, desc=f"map {model.meta.model}", unit="Mpx",
                 disable=not progress, leave=False, bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} Mpx [{elapsed}<{remaining}]") as bar:
        pending: deque[tuple[Window, Future]] = deque()

        def drain(limit: int) -> None:
            while len(pending) > limit:
                win, fut = pending.popleft()
                labels, conf = fut.result()
                dst.write(labels, 1, window=win)
                if raw_conf:
                    cdst.write(conf, 1, window=win)
                bar.update(int(win.width) * int(win.height) / 1e6)

        for win in windows:
            block = stack.read(win, halo=halo)
            pending.append((win, pool.submit(_classify, model, block, halo)))
            drain(2 * workers)
        drain(0)
    seconds = time.perf_counter() - t0
    write_class_map(raw_map, out_path, ClassTable.from_meta(model.meta))
    if raw_conf and confidence_path:
        _to_cog(raw_conf, Path(confidence_path), "AVERAGE")
    return {"path": str(out_path), "confidence_path": str(confidence_path) if confidence_path else None,
            "seconds": seconds, "pixels": g.width * g.height,
            "mpx_per_s": g.width * g.height / 1e6 / max(seconds, 1e-9)}


class _Null:
    def __enter__(self) -> "_Null":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

"""Full-scene mapping: classify a raster window by window into a Cloud-Optimized GeoTIFF.

Windows are read in the calling thread (GDAL handles are not thread-safe),
classified in a bounded thread pool (numpy, scikit-learn and torch release
the GIL) and written as they finish, so memory is bounded by
``workers * 2`` windows whatever the scene size. The class map is uint8 with
:data:`~pipeline.inputs.class_table.NODATA_CLASS` where the input has no valid data, the
class colours as a colormap and the class names in a tag, with GIS sidecars
(raster attribute table, QGIS style, colour map, legend; :func:`write_class_map`); a
confidence raster (uint8 percent, 255 nodata, with a QGIS style and a legend image:
:mod:`pipeline.mapping.legends`) can be written beside it. Both are built
under temporary names, converted to COG (tiled, DEFLATE, nearest-neighbour
overviews) and renamed at the end (:mod:`pipeline.mapping.class_maps`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window
from tqdm import tqdm

from pipeline.core.cancel import check_cancelled
from pipeline.core.errors import InputError
from pipeline.core.text import short_list
from pipeline.inputs.class_table import NODATA_CLASS, ClassTable
from pipeline.inputs.raster import RasterStack
from pipeline.mapping.class_maps import (
    colormap,
    gdal_stderr_to_log,
    remove_class_map,
    temporary_path,
    to_cog,
    verify_raster,
    write_class_map,
    writing,
)
from pipeline.mapping.legends import (
    CONFIDENCE_DESCRIPTION,
    CONFIDENCE_NODATA,
    CONFIDENCE_UNIT,
    confidence_sidecar_paths,
    encode_confidence,
    write_confidence_sidecars,
)
from pipeline.mapping.model_inputs import open_for_model
from pipeline.mapping.settings import DEFAULT_MAX_PIXELS
from pipeline.models.base import Classifier
from pipeline.sampling.patches import window_for_bands

log = logging.getLogger(__name__)


def check_map_size(stack: RasterStack, max_pixels: int | None, key: str = "mapping.max_pixels") -> None:
    """An :class:`InputError` naming the raster, its size and ``key`` when it has more than
    ``max_pixels`` pixels (None: no limit). Mapping cost and output size follow the header's
    width x height, whatever the file holds: a damaged or hostile header would start a job of
    tens of gigapixels without a word."""
    g = stack.grid
    npx = g.width * g.height
    if max_pixels is None or npx <= max_pixels:
        return
    from pipeline.core.atomic import human_bytes

    on_disk = sum(p.stat().st_size for p in stack.paths if p.exists())
    raise InputError(
        f"{stack.paths[0]}: {g.width} x {g.height} px ({npx / 1e9:.1f} Gpx, {human_bytes(on_disk)} on disk) is more "
        f"than the {max_pixels / 1e9:g} Gpx a map may have ({key}); a header this large is more often damaged than "
        f"real: if it is real, raise {key} to at least {npx}"
    )


def _classify(model: Classifier, block: np.ndarray, halo: int) -> tuple[np.ndarray, np.ndarray]:
    core = block[:, halo : block.shape[1] - halo, halo : block.shape[2] - halo] if halo else block
    valid = np.all(np.isfinite(core), axis=0)
    out = np.full(valid.shape, NODATA_CLASS, dtype=np.uint8)
    conf = np.full(valid.shape, np.nan, dtype=np.float32)
    if valid.any():
        labels, c = model.predict_block(block)
        out[valid] = labels[valid].astype(np.uint8)
        conf[valid] = c[valid]
    return out, conf


# GDAL's block cache beyond the input tiles of one window: the class map and confidence
# writers' dirty tiles (windows cover whole 256-px output tiles, so evicting them costs
# nothing) and the COG conversion. 64 MB here made a 8192^2 map peak 1.25x a 1024^2 one.
CACHE_SLACK_BYTES = 8 * 2**20


def gdal_cache_bytes(stack: RasterStack, window_size: int, halo: int) -> int:
    """GDAL block cache for mapping ``stack`` window by window: the decoded tiles of one window
    (every band) plus :data:`CACHE_SLACK_BYTES`. GDAL's default (5% of RAM) fills with tiles
    of a large raster that are never read again, so mapping memory grew with raster size."""
    return stack.window_footprint_bytes(window_size, halo) + CACHE_SLACK_BYTES


@contextmanager
def gdal_cache(nbytes: int) -> Iterator[None]:
    """Set GDAL's block cache to ``nbytes`` for the block, then put the previous size back
    (the cache is process-wide; a nested ``rasterio.Env`` does not restore it on exit)."""
    from rasterio.env import get_gdal_config, set_gdal_config

    before = get_gdal_config("GDAL_CACHEMAX")
    try:
        with rasterio.Env(GDAL_CACHEMAX=int(nbytes)):
            yield
    finally:
        if isinstance(before, int):
            set_gdal_config("GDAL_CACHEMAX", before)


def classify_raster(
    model: Classifier,
    stack: RasterStack | str | Path | list[str | Path],
    out_path: str | Path,
    confidence_path: str | Path | None = None,
    window_size: int = 512,
    workers: int = 2,
    progress: bool = True,
    client: Any = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_pixels_key: str = "mapping.max_pixels",
) -> dict:
    """Classify every pixel of ``stack`` with ``model`` and write a COG class map.

    ``stack`` is an open :class:`RasterStack`, or the path(s) of the raster (one
    multi-band file or one file per band, ``str`` or ``Path``), opened here with the
    model's bands matched by name (:func:`open_for_model`) and the model's nodata.

    With a Dask ``client`` (``distributed.Client``), every window is one task on the
    cluster: the worker opens the raster itself, reads the window with its halo and
    classifies it; this process writes the results (``workers`` in the result counts the
    windows each worker classified). The output is the same as a local run.

    The class map is finished by :func:`write_class_map` (class names and colours in
    the file and its sidecars). A raster of more than ``max_pixels`` pixels is refused
    (:func:`check_map_size`, naming ``max_pixels_key``). Returns ``{"path", "confidence_path",
    "seconds", "mpx_per_s", "pixels"}``.
    """
    if not isinstance(stack, RasterStack):
        meta = model.meta
        with open_for_model(
            stack,
            list(meta.band_names),
            model_nodata=getattr(meta, "nodata", None),
            alignment=getattr(meta, "alignment", None),
        ) as opened:
            return classify_raster(
                model,
                opened,
                out_path,
                confidence_path,
                window_size,
                workers,
                progress,
                client,
                max_pixels,
                max_pixels_key,
            )
    check_map_size(stack, max_pixels, max_pixels_key)  # before anything is read, written or sent
    # Many bands make one window large on its own (200 bands x 512^2 float32 = 210 MB, several in
    # flight, and the model's features as much again): every caller gets the same shrunk window.
    window_size = window_for_bands(window_size, stack.count, int(model.halo))
    with gdal_cache(gdal_cache_bytes(stack, window_size, int(model.halo))):
        return _classify_raster(model, stack, out_path, confidence_path, window_size, workers, progress, client)


def _classify_raster(
    model: Classifier,
    stack: RasterStack,
    out_path: str | Path,
    confidence_path: str | Path | None,
    window_size: int,
    workers: int,
    progress: bool,
    client: Any = None,
) -> dict:
    confidence_path = Path(confidence_path) if confidence_path is not None else None
    if stack.band_names != model.meta.band_names:
        raise InputError(
            f"{stack.paths[0]}: bands {short_list(stack.band_names)} do not match the model's "
            f"{short_list(model.meta.band_names)}"
        )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    g = stack.grid
    halo = int(model.halo)
    profile = dict(
        driver="GTiff",
        width=g.width,
        height=g.height,
        crs=g.crs,
        transform=g.transform,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        # The raw files are temporaries that the COG copy compresses again (DEFLATE, default
        # level): the fastest level here cut writing a 4096^2 class map from 1.2 to 0.1 s of CPU
        # for 12% more temporary bytes.
        compress="deflate",
        zlevel=1,
    )
    raw_map = temporary_path(out_path, "raw")
    raw_conf = temporary_path(confidence_path, "raw") if confidence_path else None
    # Uncompressed size of what is written (raw map and confidence, then COGs with overviews):
    # the space a worst case needs, quoted when the disk fills up.
    npx = g.width * g.height
    need_map = int(npx * 1 * (1 + 4 / 3))
    need_conf = int(npx * 1 * (1 + 4 / 3)) if raw_conf else 0
    workers = max(1, int(getattr(model, "map_workers", workers)))
    if client is not None:  # windows in flight: enough to keep every thread of the cluster busy
        workers = max(1, sum(client.nthreads().values()))
    t0 = time.perf_counter()
    windows = list(stack.windows(window_size))
    temporaries = [p for p in (raw_map, raw_conf) if p is not None]
    where: dict[str, int] = {}
    try:
        _write_windows(
            model,
            stack,
            windows,
            halo,
            profile,
            raw_map,
            raw_conf,
            workers,
            progress,
            need_map + need_conf,
            _window_source(model, stack, halo, client, where),
        )
        seconds = time.perf_counter() - t0
        with writing(raw_map, need_map + need_conf, "the class map"):
            verify_raster(raw_map)
        if raw_conf:
            with writing(raw_conf, need_conf, "the confidence raster"):
                verify_raster(raw_conf)
        write_class_map(raw_map, out_path, ClassTable.from_meta(model.meta), needed=need_map + need_conf)
        if raw_conf and confidence_path:
            with writing(Path(confidence_path), need_conf, "the confidence raster's sidecars"):
                write_confidence_sidecars(confidence_path)
            to_cog(raw_conf, Path(confidence_path), "AVERAGE", need_conf, "the confidence raster")
    except BaseException:
        # Nothing half-written stays behind: not the temporaries, and not a map whose
        # confidence raster failed (the pair is one output).
        for p in temporaries:
            p.unlink(missing_ok=True)
        if raw_conf and confidence_path:
            remove_class_map(out_path)
            for p in confidence_sidecar_paths(confidence_path).values():
                p.unlink(missing_ok=True)
        raise
    return {
        "path": str(out_path),
        "confidence_path": str(confidence_path) if confidence_path else None,
        "seconds": seconds,
        "pixels": g.width * g.height,
        "mpx_per_s": g.width * g.height / 1e6 / max(seconds, 1e-9),
        "workers": where,
        "window_size": window_size,
    }


def classify_window(
    model: Classifier, open_args: dict, nodata: list, window: tuple[int, int, int, int], halo: int, window_size: int
) -> tuple[np.ndarray, np.ndarray, str]:
    """One window on a Dask worker: open the stack from its ``open_args`` with the per-band
    ``nodata`` of the caller's stack, read ``window`` (col_off, row_off, width, height) with
    ``halo`` and classify it. Returns (class ids uint8, confidence float32, the worker's address)."""
    from distributed import get_worker

    # warn=False: the caller said once what was warped; a worker would say it for every window
    with RasterStack.open(**open_args, warn=False) as stack, gdal_cache(gdal_cache_bytes(stack, window_size, halo)):
        stack.nodata = list(nodata)  # as the caller has it (open_for_model may merge the model's)
        block = stack.read(Window(*window), halo=halo)
    labels, conf = _classify(model, block, halo)
    return labels, conf, get_worker().address


def _window_source(model: Classifier, stack: RasterStack, halo: int, client: Any, where: dict[str, int]):
    """``submit(pool, window) -> future of (labels, confidence)``: a local window is read here and
    classified in the thread pool; with a Dask client, it is read and classified by a cluster task."""
    if client is None:
        return lambda pool, win: pool.submit(_classify, model, stack.read(win, halo=halo), halo)
    if stack.open_args is None:
        raise ValueError("a stack mapped on Dask must come from RasterStack.open")
    # Sent once per worker, not once per window; under a key of its own (hash=False): with the
    # default content-hashed key, every scene mapped with the same model at the same time shares
    # one key, and the first scene to finish released it while others still used it
    # (``KeyError: 'DecisionTreeModel-<hash>'`` in ``serve --dask``).
    remote = client.scatter(model, broadcast=True, hash=False)

    def submit(pool: Any, win: Window) -> Any:
        fut = client.submit(
            classify_window,
            remote,
            stack.open_args,
            list(stack.nodata),
            (int(win.col_off), int(win.row_off), int(win.width), int(win.height)),
            halo,
            max(int(win.width), int(win.height)),
            pure=False,
        )
        return _Tagged(fut, where)

    return submit


class _Tagged:
    """A Dask future whose result drops the worker address into ``where`` (windows per worker)."""

    def __init__(self, fut: Any, where: dict[str, int]):
        self.fut, self.where = fut, where

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        labels, conf, addr = self.fut.result()
        self.where[addr] = self.where.get(addr, 0) + 1
        return labels, conf

    def cancel(self) -> None:
        self.fut.cancel()


def dask_client_here() -> Any:
    """A context manager giving a Dask client when this code runs as a task on a Dask worker
    (so that a map stage sent to the cluster fans its windows out over it), else None.
    The worker's thread leaves its pool while it waits (``worker_client``), so a worker with
    one thread still runs window tasks."""
    try:
        from distributed import get_worker, worker_client

        get_worker()
    except (ImportError, ValueError):
        return nullcontext(None)
    return worker_client()


def _write_windows(
    model: Classifier,
    stack: RasterStack,
    windows: list[Window],
    halo: int,
    profile: dict,
    raw_map: Path,
    raw_conf: Path | None,
    workers: int,
    progress: bool,
    needed: int,
    submit: Any = None,
) -> None:
    """Classify ``windows`` (``submit(pool, window)`` returns a future of (labels, confidence))
    and write them in order to the raw files."""
    submit = submit or _window_source(model, stack, halo, None, {})
    g = stack.grid
    with writing(raw_map, needed, "the class map"):
        dst = rasterio.open(raw_map, "w", count=1, dtype="uint8", nodata=NODATA_CLASS, **profile)
    try:
        with writing(raw_conf or raw_map, needed, "the confidence raster"):
            cdst = (
                rasterio.open(raw_conf, "w", count=1, dtype="uint8", nodata=CONFIDENCE_NODATA, **profile)
                if raw_conf
                else None
            )
            if cdst is not None:  # what the values mean travels inside the file (kept by the COG copy)
                cdst.set_band_description(1, CONFIDENCE_DESCRIPTION)
                cdst.set_band_unit(1, CONFIDENCE_UNIT)
        with (
            dst,
            cdst if cdst is not None else nullcontext(),
            ThreadPoolExecutor(max_workers=workers) as pool,
            tqdm(
                total=g.width * g.height / 1e6,
                desc=f"map {model.meta.model}",
                unit="Mpx",
                disable=not progress,
                leave=False,
                bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} Mpx [{elapsed}<{remaining}]",
            ) as bar,
        ):
            with writing(raw_map, needed, "the class map"):
                dst.write_colormap(1, colormap(model.meta.class_ids, model.meta.class_colors))
            pending: deque[tuple[Window, Future]] = deque()

            def drain(limit: int) -> None:
                while len(pending) > limit:
                    win, fut = pending.popleft()
                    labels, conf = fut.result()
                    with writing(raw_map, needed, "the class map"):
                        dst.write(labels, 1, window=win)
                    if raw_conf and cdst is not None:
                        with writing(raw_conf, needed, "the confidence raster"):
                            cdst.write(encode_confidence(conf), 1, window=win)
                    bar.update(int(win.width) * int(win.height) / 1e6)

            try:
                for win in windows:
                    check_cancelled()
                    pending.append((win, submit(pool, win)))
                    drain(2 * workers)
                drain(0)
            except BaseException:
                for _, fut in pending:  # do not classify windows nobody will write
                    fut.cancel()
                raise
            finally:
                with gdal_stderr_to_log():  # closing flushes GDAL's cache: the last writes happen here
                    dst.close()
                    if cdst is not None:
                        cdst.close()
    finally:
        if not dst.closed:
            with gdal_stderr_to_log():
                dst.close()

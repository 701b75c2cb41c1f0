"""Writing the outputs of mapping: the class map and the confidence raster as Cloud-Optimized
GeoTIFFs, whole or not at all.

The mapper (:mod:`pipeline.mapping.classify`) writes raw tiled GeoTIFFs under temporary names
(:func:`temporary_path`); :func:`write_class_map` gives a class map its colours, class names,
GIS sidecars (raster attribute table, QGIS style, colour map) and legend image, and :func:`to_cog` converts a raw
file to a COG (tiled, DEFLATE, overviews), reads it back (:func:`verify_raster`) and renames it
into place. A failed write is one clear error (:func:`writing`): out of space naming the space
needed, or a write error naming the final file; nothing half-written stays.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import rasterio
import rasterio.shutil
from rasterio.errors import RasterioError

from pipeline.core.atomic import disk_full, is_out_of_space, out_of_space
from pipeline.core.errors import InputError, OutputWriteError
from pipeline.inputs.class_table import NAMES_TAG, ClassTable, write_sidecars
from pipeline.mapping.legends import legend_path, write_class_legend

log = logging.getLogger(__name__)


def colormap(class_ids: list[int], colors: list[str]) -> dict[int, tuple[int, int, int, int]]:
    """GDAL colormap for class ids; every other value (nodata too) is transparent black."""
    return ClassTable.of(class_ids, [str(i) for i in class_ids], colors).colormap()


def temporary_path(path: Path, tag: str) -> Path:
    """``<dir>/.<stem>.<tag><suffix>``: the hidden name an output is built under before it is renamed into place."""
    return path.with_name(f".{path.stem}.{tag}{path.suffix}")


try:  # GDAL's own error classes (not RasterioError subclasses) raised from rasterio.shutil.copy
    from rasterio._err import CPLE_BaseError as _CPLE
except ImportError:  # pragma: no cover - private module moved
    _CPLE = RasterioError

_WRITE_ERRORS = (OSError, RasterioError, _CPLE)


@contextmanager
def writing(path: Path, needed: int | None, what: str) -> Iterator[None]:
    """Turn a failed raster write into one clear error: out of space (naming the space
    needed) or a write error naming the file (its final name, not the temporary one). Wraps
    only writes and read-backs of what was written, so that a bad *input* keeps its own
    error; what libtiff prints on the side goes to the log (:func:`gdal_stderr_to_log`)."""
    shown = _final_name(Path(path))
    try:
        with gdal_stderr_to_log():
            yield
    except OutputWriteError as e:
        if disk_full(path, needed):
            raise out_of_space(shown, needed, what) from e
        raise
    except InputError:
        raise
    except _WRITE_ERRORS as e:
        if is_out_of_space(e) or disk_full(path, needed):
            raise out_of_space(shown, needed, what) from e
        raise OutputWriteError(
            f"{shown}: writing {what} failed ({' '.join(str(e).split()) or type(e).__name__})"
        ) from e


def _final_name(path: Path) -> Path:
    """The output a temporary file of :func:`temporary_path` stands for (``.m.raw.tif`` -> ``m.tif``)."""
    m = re.fullmatch(r"\.(.+)\.(?:raw|cog)(\.[^.]+)", path.name)
    return path.with_name(m[1] + m[2]) if m else path


# fd 2 is one per process: threads that close rasters at the same time share one capture.
_capture_lock = threading.Lock()
_capture: dict = {"users": 0}


@contextmanager
def gdal_stderr_to_log() -> Iterator[None]:
    """Catch what libtiff prints straight to fd 2 while GDAL flushes a file.

    GDAL's TIFF writer reports a failed flush at close (e.g. ``_tiffWriteProc: No space left
    on device.``) on the C library's stderr, outside any Python error handling; the read-back
    in :func:`verify_raster` is what detects the failure, and the CLI prints it as one line.
    Captured text is written back to stderr afterwards, except the "no space" noise, which
    goes to the log at debug level.
    """
    with _capture_lock:
        if _capture["users"] == 0:
            sys.stderr.flush()
            _capture["file"] = tempfile.TemporaryFile()
            _capture["saved"] = os.dup(2)
            os.dup2(_capture["file"].fileno(), 2)
        _capture["users"] += 1
    try:
        yield
    finally:
        with _capture_lock:
            _capture["users"] -= 1
            if _capture["users"] == 0:
                os.dup2(_capture["saved"], 2)
                os.close(_capture["saved"])
                f = _capture.pop("file")
                f.seek(0)
                text = f.read().decode(errors="replace")
                f.close()
                keep = []
                for line in text.splitlines(keepends=True):
                    if "No space left on device" in line:
                        log.debug("GDAL: %s", line.strip())
                    else:
                        keep.append(line)
                if keep:
                    sys.stderr.write("".join(keep))
                    sys.stderr.flush()


def verify_raster(path: Path) -> None:
    """Read back a GeoTIFF just written and raise if it is not whole.

    GDAL reports a failed flush on close (for instance a full disk) only in its log: the
    file is then truncated or lacks its directory. This opens the file, checks that every
    block of every band and overview lies inside the file, and reads the last block.
    Raises ``RasterioError`` or :class:`~pipeline.core.errors.OutputWriteError`.
    """
    size = Path(path).stat().st_size
    with rasterio.open(path) as src:
        for b in src.indexes:
            by, bx = src.block_shapes[b - 1]
            factors = src.overviews(b)
            for ovr in [None, *range(len(factors))]:
                f = 1 if ovr is None else factors[ovr]
                tiles_x, tiles_y = -(-(-(-src.width // f)) // bx), -(-(-(-src.height // f)) // by)  # noqa: B002 - ceil divisions
                end = 0
                for ty in range(tiles_y):
                    for tx in range(tiles_x):
                        off = src.get_tag_item(f"BLOCK_OFFSET_{tx}_{ty}", "TIFF", bidx=b, ovr=ovr)
                        n = src.get_tag_item(f"BLOCK_SIZE_{tx}_{ty}", "TIFF", bidx=b, ovr=ovr)
                        if off and n:
                            end = max(end, int(off) + int(n))
                if end > size:
                    raise OutputWriteError(f"{path}: truncated: {size} bytes on disk, its blocks reach byte {end}")
            _, last = list(src.block_windows(b))[-1]
            src.read(b, window=last)


def to_cog(src: Path, dst: Path, resampling: str, needed: int | None, what: str) -> None:
    tmp = temporary_path(dst, "cog")
    try:
        with writing(dst, needed, what), gdal_stderr_to_log():
            rasterio.shutil.copy(
                src,
                tmp,
                driver="COG",
                COMPRESS="DEFLATE",
                OVERVIEW_RESAMPLING=resampling,
                BLOCKSIZE=256,
                NUM_THREADS="ALL_CPUS",
            )
            verify_raster(tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    src.unlink(missing_ok=True)


def write_class_map(raw: Path, out_path: Path, classes: ClassTable, needed: int | None = None) -> Path:
    """Turn a finished raw class raster into the class map at ``out_path``: every class map goes through here.

    ``raw`` is a tiled uint8 GeoTIFF of class ids (nodata :data:`~pipeline.inputs.class_table.NODATA_CLASS`), written
    by the caller; it is consumed. The map gets the class colour map, the ``class_names``
    tag on the dataset and band 1 (both embedded, they survive the COG copy), becomes a
    COG with nearest-neighbour overviews, and gets its ``.tif.aux.xml`` (raster attribute
    table, category names, RGBA colour table), ``.qml`` and ``.clr`` sidecars
    (:mod:`pipeline.inputs.class_table`) and its legend image ``<stem>_legend.png``
    (:mod:`pipeline.mapping.legends`); :func:`class_map_files` lists them. The sidecars are
    written before the map is renamed into place, so a map under its final name always has them. Every write is checked
    (GDAL errors raised, the COG read back); on failure neither the map nor its sidecars
    stay, and the error is one line (:class:`~pipeline.core.errors.OutOfSpaceError` naming the
    space ``needed`` when the disk is full).
    """
    out_path = Path(out_path)
    try:
        with writing(out_path, needed, "the class map"):
            with rasterio.open(raw, "r+") as ds:
                ds.write_colormap(1, classes.colormap())
                ds.update_tags(**{NAMES_TAG: classes.names_tag()})
                ds.update_tags(1, **{NAMES_TAG: classes.names_tag()})
        with writing(out_path, needed, "the class map's sidecars"):
            write_sidecars(out_path, classes)
            write_class_legend(legend_path(out_path), classes)
        to_cog(raw, out_path, "NEAREST", needed, "the class map")
    except BaseException:
        remove_class_map(out_path)
        raise
    return out_path


def class_map_files(path: str | Path) -> list[Path]:
    """The files that come with a class map written by :func:`write_class_map`, the map excluded:
    its ``.tif.aux.xml``, ``.qml`` and ``.clr`` sidecars and its legend image."""
    from pipeline.inputs.class_table import sidecar_paths

    return [*sidecar_paths(path).values(), legend_path(path)]


def remove_class_map(path: Path) -> None:
    """Remove a class map and its sidecars (after a failure: no half of a map stays)."""
    Path(path).unlink(missing_ok=True)
    for p in class_map_files(path):
        Path(p).unlink(missing_ok=True)
